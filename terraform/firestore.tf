resource "google_firestore_database" "default" {
  name                    = "(default)"
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"
  # Point-in-time recovery: the last 7 days can be read back after a mistake.
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"

  depends_on = [google_project_service.api]
}

# TTL policies: documents are deleted after their `expire_at` (audit entries after
# AUDIT_RETENTION_DAYS; transfer jobs, their parts and twin call records when their function sets
# it; rate limit windows a day after they end; clio tokens' records when the token expires).
resource "google_firestore_field" "ttl" {
  for_each   = toset(["audit", "transfer_jobs", "transfer_parts", "twin_calls", "twin_jobs", "rate_limits", "api_keys"])
  database   = google_firestore_database.default.name
  collection = each.key
  field      = "expire_at"

  ttl_config {}
  # No single-field index on a field only the TTL policy reads.
  index_config {}
}
