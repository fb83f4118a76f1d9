# Twin-endpoint jobs: approved requests are queued here and run by the private side.
resource "google_pubsub_topic" "twin_jobs" {
  #checkov:skip=CKV_GCP_83:messages carry job ids and request references, never dataset contents; Google-managed encryption applies
  name                       = "gatehouse-twin-jobs"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "twin_jobs_dead_letter" {
  #checkov:skip=CKV_GCP_83:messages carry job ids and request references, never dataset contents; Google-managed encryption applies
  name                       = "gatehouse-twin-jobs-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "twin_jobs" {
  name                       = "gatehouse-twin-jobs"
  topic                      = google_pubsub_topic.twin_jobs.id
  ack_deadline_seconds       = 300
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.twin_jobs_dead_letter.id
    max_delivery_attempts = 10
  }
}

# Transfer parts: POST /transfer publishes one message per part; the transfer worker (the
# `work` entry point of the transfer archive, functions/transfer/main.py) sends one part per
# delivery. The worker is reached by a push subscription of our own rather than an Eventarc
# event_trigger: Eventarc's subscription cannot carry a dead-letter policy set by Terraform, and
# this is exactly the wiring the tests and `make dev` run on the emulator (tools/workers.py).
# functions-framework turns the push body into the same messagePublished CloudEvent.
resource "google_pubsub_topic" "transfer_parts" {
  #checkov:skip=CKV_GCP_83:messages carry a job id and a part key, never dataset contents; Google-managed encryption applies
  name                       = "gatehouse-transfer-parts"
  message_retention_duration = "86400s"

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "transfer_parts_dead_letter" {
  #checkov:skip=CKV_GCP_83:messages carry a job id and a part key, never dataset contents; Google-managed encryption applies
  name                       = "gatehouse-transfer-parts-dead-letter"
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

resource "google_cloudfunctions2_function" "transfer_worker" {
  #checkov:skip=CKV_GCP_124:Pub/Sub push reaches the worker over its URL; IAM lets only the pusher service account invoke it
  name        = "gatehouse-transfer-worker"
  location    = var.region
  description = "Transfer worker: one part per Pub/Sub delivery"

  build_config {
    runtime     = "python311"
    entry_point = "work"
    source {
      storage_source {
        bucket = google_storage_bucket.bucket["sources"].name
        object = google_storage_bucket_object.source["transfer"].name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.transfer_worker.email
    ingress_settings               = "ALLOW_ALL"
    available_memory               = "256Mi"
    max_instance_count             = var.max_instances
    min_instance_count             = 0
    timeout_seconds                = var.transfer_timeout_seconds + 60
    all_traffic_on_latest_revision = true
    environment_variables          = local.common_env
  }

  depends_on = [google_project_service.api, google_project_iam_member.transfer_worker_firestore]
}

resource "google_service_account" "transfer_pusher" {
  account_id   = "gatehouse-transfer-pusher"
  display_name = "Pub/Sub push to the Gatehouse transfer worker"
}

resource "google_cloud_run_service_iam_member" "transfer_pusher_invoker" {
  location = var.region
  service  = google_cloudfunctions2_function.transfer_worker.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.transfer_pusher.email}"
}

resource "google_pubsub_subscription" "transfer_parts" {
  name                       = "gatehouse-transfer-parts"
  topic                      = google_pubsub_topic.transfer_parts.id
  ack_deadline_seconds       = min(var.transfer_timeout_seconds + 60, 600)
  message_retention_duration = "86400s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.transfer_worker.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.transfer_pusher.email
      audience              = google_cloudfunctions2_function.transfer_worker.service_config[0].uri
    }
  }

  # A failed attempt is delivered again after a growing pause; the worker stops a part after
  # var.transfer_attempts, so the dead-letter topic only takes messages it could not handle.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "300s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.transfer_parts_dead_letter.id
    max_delivery_attempts = 10
  }
}

# The transfer function publishes the parts.
resource "google_pubsub_topic_iam_member" "transfer_publisher" {
  topic  = google_pubsub_topic.transfer_parts.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.function["transfer"].email}"
}

# Dataset purges: DELETE /datasets purges a first bounded step, then queues the next one here;
# the purge worker (the `purge_work` entry point of the datasets archive) runs one step per
# delivery and queues the next until the purge is done. It runs as the datasets function's
# service account, which may already delete everything a dataset holds.
resource "google_pubsub_topic" "dataset_purges" {
  #checkov:skip=CKV_GCP_83:messages carry a deletion id, never dataset contents; Google-managed encryption applies
  name                       = "gatehouse-dataset-purges"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "dataset_purges_dead_letter" {
  #checkov:skip=CKV_GCP_83:messages carry a deletion id, never dataset contents; Google-managed encryption applies
  name                       = "gatehouse-dataset-purges-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.api]
}

resource "google_cloudfunctions2_function" "purge_worker" {
  #checkov:skip=CKV_GCP_124:Pub/Sub push reaches the worker over its URL; IAM lets only the pusher service account invoke it
  name        = "gatehouse-purge-worker"
  location    = var.region
  description = "Dataset purge worker: one bounded step per Pub/Sub delivery"

  build_config {
    runtime     = "python311"
    entry_point = "purge_work"
    source {
      storage_source {
        bucket = google_storage_bucket.bucket["sources"].name
        object = google_storage_bucket_object.source["datasets"].name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.function["datasets"].email
    ingress_settings               = "ALLOW_ALL"
    available_memory               = "512Mi"
    max_instance_count             = 5
    min_instance_count             = 0
    timeout_seconds                = 300
    all_traffic_on_latest_revision = true
    environment_variables          = local.common_env
  }

  depends_on = [google_project_service.api, google_project_iam_member.firestore_user]
}

resource "google_service_account" "purge_pusher" {
  account_id   = "gatehouse-purge-pusher"
  display_name = "Pub/Sub push to the Gatehouse dataset purge worker"
}

resource "google_cloud_run_service_iam_member" "purge_pusher_invoker" {
  location = var.region
  service  = google_cloudfunctions2_function.purge_worker.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.purge_pusher.email}"
}

resource "google_pubsub_subscription" "dataset_purges" {
  name                       = "gatehouse-dataset-purges"
  topic                      = google_pubsub_topic.dataset_purges.id
  ack_deadline_seconds       = 360
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.purge_worker.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.purge_pusher.email
      audience              = google_cloudfunctions2_function.purge_worker.service_config[0].uri
    }
  }

  # A step that fails is delivered again; steps are idempotent.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dataset_purges_dead_letter.id
    max_delivery_attempts = 10
  }
}

# The datasets function (and its purge worker, as the same account) queues purge steps.
resource "google_pubsub_topic_iam_member" "purge_publisher" {
  topic  = google_pubsub_topic.dataset_purges.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.function["datasets"].email}"
}

# Dead letters: Pub/Sub's own service agent forwards them and acknowledges the originals.
data "google_project" "this" {}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = { transfer = google_pubsub_topic.transfer_parts_dead_letter.id, twin_jobs = google_pubsub_topic.twin_jobs_dead_letter.id, purges = google_pubsub_topic.dataset_purges_dead_letter.id }
  topic    = each.value
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = { transfer = google_pubsub_subscription.transfer_parts.id, twin_jobs = google_pubsub_subscription.twin_jobs.id, purges = google_pubsub_subscription.dataset_purges.id }
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
