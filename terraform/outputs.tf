output "gateway_url" {
  description = "The API's base URL: $BASE in the README's curl lines."
  value       = "https://${google_api_gateway_gateway.gateway.default_hostname}"
}

output "function_urls" {
  description = "Each function's own URL (only the gateway and var.extra_invokers may call it)."
  value       = { for name, fn in google_cloudfunctions2_function.function : name => fn.service_config[0].uri }
}

output "buckets" {
  description = "Bucket names by purpose."
  value       = merge({ for key, bucket in google_storage_bucket.bucket : key => bucket.name }, { transfer-output = google_storage_bucket.transfer_output.name })
}

output "twin_jobs_topic" {
  description = "Pub/Sub topic of approved twin-endpoint jobs."
  value       = google_pubsub_topic.work["twin_jobs"].id
}

output "transfer_worker_service_account" {
  description = "The account that calls the transfer network (TRANSFER_FUNC must let it invoke)."
  value       = google_service_account.transfer_worker.email
}
