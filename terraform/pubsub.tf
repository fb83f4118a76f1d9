# Background workers (tools/workers.py), one map: each is a CloudEvent entry point of a
# function's archive, reached by a push subscription of our own on its topic rather than an
# Eventarc event_trigger (Eventarc's subscription cannot carry a dead-letter policy set by
# Terraform); this is exactly the wiring the tests and `make dev` run on the emulator, and
# functions-framework turns the push body into the same messagePublished CloudEvent.
# - transfer: POST /transfer publishes one message per job; `work` sends the job's unfinished
#   parts at once in one delivery (each attempt within var.transfer_timeout_seconds, all started
#   in its first 20 s, hence the timeout below) and stops a part after var.transfer_attempts, so
#   dead letters are only what it could not handle.
# - purge: DELETE /datasets purges a first bounded step and queues the next; `purge_work` runs one
#   step per delivery and queues the next until done. It runs as the datasets function's account,
#   which may already delete everything a dataset holds.
# - twin_jobs: `?async=1` twin calls and request runs; `job_work` carries out one job per
#   delivery (a lease in the job makes a redelivery harmless). It runs as the twins function's
#   account: the endpoints' code needs what the twins function may reach.
locals {
  workers = {
    transfer = {
      function        = "transfer", entry_point = "work", topic = "gatehouse-transfer-parts",
      description     = "Transfer worker: a job's parts at once per Pub/Sub delivery",
      service_account = google_service_account.transfer_worker.email, publisher = "transfer",
      memory          = "256Mi", timeout = var.transfer_timeout_seconds + 60, max_instances = var.max_instances,
      retention       = "86400s", max_backoff = "300s",
    }
    purge = {
      function        = "datasets", entry_point = "purge_work", topic = "gatehouse-dataset-purges",
      description     = "Dataset purge worker: one bounded step per Pub/Sub delivery",
      service_account = google_service_account.function["datasets"].email, publisher = "datasets",
      memory          = "512Mi", timeout = 300, max_instances = 5,
      retention       = "604800s", max_backoff = "600s",
    }
    twin_jobs = {
      function        = "twins", entry_point = "job_work", topic = "gatehouse-twin-jobs",
      description     = "Twin jobs worker: one async call or request run per Pub/Sub delivery",
      service_account = google_service_account.function["twins"].email, publisher = "twins",
      memory          = var.twins_memory, timeout = 300, max_instances = var.max_instances,
      retention       = "604800s", max_backoff = "600s",
    }
  }
}

resource "google_pubsub_topic" "work" {
  #checkov:skip=CKV_GCP_83:messages carry ids of work (a job and part, a deletion), never dataset contents; Google-managed encryption applies
  for_each                   = local.workers
  name                       = each.value.topic
  message_retention_duration = each.value.retention

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "work_dead_letter" {
  #checkov:skip=CKV_GCP_83:messages carry ids of work (a job and part, a deletion), never dataset contents; Google-managed encryption applies
  for_each                   = local.workers
  name                       = "${each.value.topic}-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.api]
}

resource "google_service_account" "transfer_worker" {
  account_id   = "gatehouse-transfer-worker"
  display_name = "Gatehouse transfer worker (sends parts to the transfer network)"
}

resource "google_project_iam_member" "transfer_worker_firestore" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.transfer_worker.email}"
}

resource "google_cloudfunctions2_function" "worker" {
  #checkov:skip=CKV_GCP_124:Pub/Sub push reaches the worker over its URL; IAM lets only the pusher service account invoke it
  # Cloud Run service names and account ids take hyphens, not underscores (twin_jobs).
  for_each    = local.workers
  name        = "gatehouse-${replace(each.key, "_", "-")}-worker"
  location    = var.region
  description = each.value.description

  build_config {
    runtime     = "python311"
    entry_point = each.value.entry_point
    source {
      storage_source {
        bucket = google_storage_bucket.bucket["sources"].name
        object = google_storage_bucket_object.source[each.value.function].name
      }
    }
  }

  service_config {
    service_account_email          = each.value.service_account
    ingress_settings               = "ALLOW_ALL"
    available_memory               = each.value.memory
    max_instance_count             = each.value.max_instances
    min_instance_count             = 0
    timeout_seconds                = each.value.timeout
    all_traffic_on_latest_revision = true
    environment_variables          = local.common_env
    # The twin jobs worker runs endpoint code: the same optional VPC egress as the twins function.
    vpc_connector                 = each.value.function == "twins" && var.twins_vpc_connector != "" ? var.twins_vpc_connector : null
    vpc_connector_egress_settings = each.value.function == "twins" && var.twins_vpc_connector != "" ? "ALL_TRAFFIC" : null
  }

  depends_on = [google_project_service.api, google_project_iam_member.firestore_user, google_project_iam_member.transfer_worker_firestore]
}

resource "google_service_account" "pusher" {
  for_each     = local.workers
  account_id   = "gatehouse-${replace(each.key, "_", "-")}-pusher"
  display_name = "Pub/Sub push to the Gatehouse ${each.key} worker"
}

resource "google_cloud_run_service_iam_member" "pusher_invoker" {
  for_each = local.workers
  location = var.region
  service  = google_cloudfunctions2_function.worker[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pusher[each.key].email}"
}

resource "google_pubsub_subscription" "work" {
  for_each                   = local.workers
  name                       = each.value.topic
  topic                      = google_pubsub_topic.work[each.key].id
  ack_deadline_seconds       = min(each.value.timeout, 600)
  message_retention_duration = each.value.retention

  push_config {
    push_endpoint = google_cloudfunctions2_function.worker[each.key].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.pusher[each.key].email
      audience              = google_cloudfunctions2_function.worker[each.key].service_config[0].uri
    }
  }

  # A failed delivery comes again after a growing pause (the work is idempotent).
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = each.value.max_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.work_dead_letter[each.key].id
    max_delivery_attempts = 10
  }
}

# The function that queues the work may publish to its topic (and nothing else may).
resource "google_pubsub_topic_iam_member" "work_publisher" {
  for_each = local.workers
  topic    = google_pubsub_topic.work[each.key].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.value.publisher].email}"
}

moved {
  from = google_pubsub_topic.transfer_parts
  to   = google_pubsub_topic.work["transfer"]
}

moved {
  from = google_pubsub_topic.twin_jobs
  to   = google_pubsub_topic.work["twin_jobs"]
}

moved {
  from = google_pubsub_topic.twin_jobs_dead_letter
  to   = google_pubsub_topic.work_dead_letter["twin_jobs"]
}

moved {
  from = google_pubsub_subscription.twin_jobs
  to   = google_pubsub_subscription.work["twin_jobs"]
}

moved {
  from = google_pubsub_topic.transfer_parts_dead_letter
  to   = google_pubsub_topic.work_dead_letter["transfer"]
}

moved {
  from = google_cloudfunctions2_function.transfer_worker
  to   = google_cloudfunctions2_function.worker["transfer"]
}

moved {
  from = google_service_account.transfer_pusher
  to   = google_service_account.pusher["transfer"]
}

moved {
  from = google_cloud_run_service_iam_member.transfer_pusher_invoker
  to   = google_cloud_run_service_iam_member.pusher_invoker["transfer"]
}

moved {
  from = google_pubsub_subscription.transfer_parts
  to   = google_pubsub_subscription.work["transfer"]
}

moved {
  from = google_pubsub_topic_iam_member.transfer_publisher
  to   = google_pubsub_topic_iam_member.work_publisher["transfer"]
}

# Dead letters: Pub/Sub's own service agent forwards them and acknowledges the originals.
data "google_project" "this" {}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = { for k, t in google_pubsub_topic.work_dead_letter : k => t.id }
  topic    = each.value
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = { for k, sub in google_pubsub_subscription.work : k => sub.id }
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
