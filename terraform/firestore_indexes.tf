# Composite indexes the functions' queries need (the emulator does not enforce them).
# The deployment issue wires these into the full configuration.

# datasets: GET /datasets/{name}/logs -> audit where dataset == name order by at desc
resource "google_firestore_index" "audit_by_dataset" {
  project    = var.project
  database   = "(default)"
  collection = "audit"

  fields {
    field_path = "dataset"
    order      = "ASCENDING"
  }
  fields {
    field_path = "at"
    order      = "DESCENDING"
  }
}

variable "project" {
  description = "Google Cloud project id"
  type        = string
}
