# Every private bucket: uniform bucket-level access, public access prevented, versioned (old versions
# kept 30 days), so an overwrite or a delete can be undone.
resource "google_storage_bucket" "bucket" {
  #checkov:skip=CKV_GCP_62:access is recorded by Cloud Audit Logs (data access) and the functions' own audit entries; a log bucket per bucket adds nothing
  for_each                    = local.buckets
  name                        = "${local.bucket_prefix}-${each.key}"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = { app = "gatehouse", purpose = replace(lower(each.value.purpose), "/[^a-z0-9_-]+/", "-") }

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

# Transfer output: the one bucket anyone may read. Its volumes are opened by neuroglancer in the
# user's browser, which sends no credentials (the seed: "a read public cache"), so objects are
# readable by allUsers with storage.objects.get only (legacyObjectReader: no listing, so a volume
# is found only through its random 128-bit directory name), and CORS admits the neuroglancer
# origins, GET and HEAD only. Nothing but transfer volumes is written here, and they expire.
# var.transfer_output_public = false (where an organisation policy refuses allUsers) makes it
# private like the others: public access prevention enforced, no public binding.
resource "google_storage_bucket" "transfer_output" {
  #checkov:skip=CKV_GCP_114:public read of this one bucket is intended (neuroglancer reads volumes without credentials); allUsers gets get-only, no list, see transfer_output_public_read
  #checkov:skip=CKV_GCP_62:access is recorded by Cloud Audit Logs (data access) and the functions' own audit entries; a log bucket per bucket adds nothing
  name                        = "${local.bucket_prefix}-transfer-output"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = var.transfer_output_public ? "inherited" : "enforced"
  force_destroy               = false
  labels                      = { app = "gatehouse", purpose = "neuroglancer-volumes-written-by-transfer" }

  cors {
    origin          = var.neuroglancer_origins
    method          = ["GET", "HEAD"]
    response_header = ["Content-Type", "Content-Length", "Content-Encoding", "Range"]
    max_age_seconds = 3600
  }

  versioning {
    enabled = true
  }

  # Volumes live as long as their jobs (JOB_DAYS in functions/transfer/main.py).
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

moved {
  from = google_storage_bucket.bucket["transfer-output"]
  to   = google_storage_bucket.transfer_output
}

resource "google_storage_bucket_iam_member" "transfer_output_public_read" {
  #checkov:skip=CKV_GCP_28:the transfer output is read by neuroglancer without credentials by design; objects get only (no list), CORS limited to var.neuroglancer_origins
  count  = var.transfer_output_public ? 1 : 0
  bucket = google_storage_bucket.transfer_output.name
  role   = "roles/storage.legacyObjectReader"
  member = "allUsers"
}

# Writers: the transfer function writes each volume's `info`; the transfer network writes the
# chunks (objectAdmin: a retried part overwrites what an earlier attempt left).
resource "google_storage_bucket_iam_member" "transfer_output_function" {
  bucket = google_storage_bucket.transfer_output.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.function["transfer"].email}"
}

resource "google_storage_bucket_iam_member" "transfer_output_network" {
  count  = var.transfer_network_service_account == "" ? 0 : 1
  bucket = google_storage_bucket.transfer_output.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${var.transfer_network_service_account}"
}
