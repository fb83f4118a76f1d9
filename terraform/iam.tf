# Least privilege: each function's service account may use Firestore and only the buckets the
# function uses; only the API gateway's account (and var.extra_invokers) may invoke a function.

resource "google_project_iam_member" "firestore_user" {
  for_each = local.functions
  project  = var.project
  role     = "roles/datastore.user"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "function_bucket" {
  for_each = local.function_buckets
  bucket   = google_storage_bucket.bucket[each.value.bucket].name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# Signing V4 URLs without a key file: the function signs as itself through IAM signBlob.
resource "google_service_account_iam_member" "sign_urls" {
  for_each           = { for name, fn in local.functions : name => fn if fn.sign_urls }
  service_account_id = google_service_account.function[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.function[each.key].email}"
}

# clio tokens are signed by this account's Google-held key (no key leaves Google): only the
# users function may sign as it (signBlob), every function verifies with its public keys.
resource "google_service_account" "clio_signer" {
  account_id   = "gatehouse-clio-signer"
  display_name = "Gatehouse clio token signer (no function runs as it)"
}

resource "google_service_account_iam_member" "clio_signer_users" {
  service_account_id = google_service_account.clio_signer.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.function["users"].email}"
}

# Only with var.flyem_secret (HS256 tokens DVID accepts): every function verifies with it.
resource "google_secret_manager_secret_iam_member" "flyem_secret" {
  for_each  = var.flyem_secret != "" ? local.functions : {}
  project   = var.project
  secret_id = var.flyem_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Only with var.neuprint_token_secret: neuPrint's service token, readable by the neuprint function alone.
resource "google_secret_manager_secret_iam_member" "neuprint_token" {
  count     = var.neuprint_token_secret != "" ? 1 : 0
  project   = var.project
  secret_id = var.neuprint_token_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function["neuprint"].email}"
}

resource "google_service_account" "gateway" {
  account_id   = "gatehouse-gateway"
  display_name = "Gatehouse API gateway (invokes the functions)"
}

resource "google_cloud_run_service_iam_member" "gateway_invoker" {
  for_each = local.functions
  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_cloud_run_service_iam_member" "extra_invoker" {
  for_each = { for pair in setproduct(keys(local.functions), var.extra_invokers) : "${pair[0]}/${pair[1]}" => pair }
  location = var.region
  service  = google_cloudfunctions2_function.function[each.value[0]].name
  role     = "roles/run.invoker"
  member   = each.value[1]
}
