# Every bucket: uniform bucket-level access, public access prevented, versioned (old versions
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
