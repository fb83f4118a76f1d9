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
