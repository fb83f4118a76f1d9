# Composite indexes the functions' queries need (the emulator does not enforce them).
# Queries with equality filters only, ordered by document id, are also served by merging
# single-field indexes; these composites make them direct. "CONTAINS" is an array-contains field.
locals {
  firestore_indexes = {
    # datasets: GET /datasets/{name}/logs -> audit where dataset == name order by at desc
    audit_by_dataset = { collection = "audit", fields = [["dataset", "ASCENDING"], ["at", "DESCENDING"]] }
    # ... of a dataset with a generation (every dataset made since): where generation == g order by at desc
    audit_by_generation = { collection = "audit", fields = [["generation", "ASCENDING"], ["at", "DESCENDING"]] }
    # transfer: GET /transfer -> transfer_jobs where user == caller order by created_at desc
    transfer_jobs_by_user = { collection = "transfer_jobs", fields = [["user", "ASCENDING"], ["created_at", "DESCENDING"]] }
    # annotations: GET /annotations/v2/{ds}?kind=&tag= -> where user (== | in) [and kind ==] [and tags contains]
    v2_by_user_kind     = { collection = "v2_annotations", fields = [["user", "ASCENDING"], ["kind", "ASCENDING"]] }
    v2_by_user_tag      = { collection = "v2_annotations", fields = [["user", "ASCENDING"], ["tags", "CONTAINS"]] }
    v2_by_user_kind_tag = { collection = "v2_annotations", fields = [["user", "ASCENDING"], ["kind", "ASCENDING"], ["tags", "CONTAINS"]] }
    # atlas: GET /atlas/{ds} (dataset, user); GET /atlas/all (dataset in + verified; user + verified)
    atlas_by_dataset_user     = { collection = "atlas", fields = [["dataset", "ASCENDING"], ["user", "ASCENDING"]] }
    atlas_by_dataset_verified = { collection = "atlas", fields = [["dataset", "ASCENDING"], ["verified", "ASCENDING"]] }
    atlas_by_user_verified    = { collection = "atlas", fields = [["user", "ASCENDING"], ["verified", "ASCENDING"]] }
    # twins: GET /twins/{path}/calls -> twin_calls where endpoint_generation == g order by at desc
    twin_calls_by_endpoint_generation = { collection = "twin_calls", fields = [["endpoint_generation", "ASCENDING"], ["at", "DESCENDING"]] }
    # ... of an endpoint made before generations: where endpoint == path and at >= its creation order by at desc
    twin_calls_by_endpoint = { collection = "twin_calls", fields = [["endpoint", "ASCENDING"], ["at", "DESCENDING"]] }
  }
}

resource "google_firestore_index" "composite" {
  for_each   = local.firestore_indexes
  database   = google_firestore_database.default.name
  collection = each.value.collection

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value[0]
      order        = fields.value[1] == "CONTAINS" ? null : fields.value[1]
      array_config = fields.value[1] == "CONTAINS" ? "CONTAINS" : null
    }
  }
}
