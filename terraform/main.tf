# One Cloud Function (2nd gen) per folder of functions/, from one map; each runs as its own
# service account with only the access it needs.
locals {
  bucket_prefix = var.bucket_prefix != "" ? var.bucket_prefix : "${var.project}-gatehouse"

  # buckets: which of local.buckets the function reads and writes.
  # sign_urls: it signs V4 URLs, through IAM signBlob as itself.
  functions = {
    roles           = { description = "The caller's roles", buckets = [], sign_urls = false }
    users           = { description = "Users, roles and API keys", buckets = [], sign_urls = false }
    datasets        = { description = "Datasets, logs and attachments", buckets = ["attachments", "signatures"], sign_urls = true }
    annotations     = { description = "Annotations v1 and v2", buckets = [], sign_urls = false }
    savedsearches   = { description = "Saved searches", buckets = [], sign_urls = false }
    kv              = { description = "clio's key-value store and pull requests", buckets = [], sign_urls = false }
    bodyannotations = { description = "clio's body annotations, proxied to the datasets' DVID servers", buckets = [], sign_urls = false }
    neuprint        = { description = "clio's neuPrint proxy (Cypher to a dataset's neuPrint server)", buckets = [], sign_urls = false }
    atlas           = { description = "Atlas entries", buckets = [], sign_urls = false }
    transfer        = { description = "Transfer to neuroglancer volumes", buckets = [], sign_urls = false }
    signatures      = { description = "Image signatures: at a location, and similar locations", buckets = ["signatures"], sign_urls = false }
    twins           = { description = "Twin endpoints: mock and private sides of API bridges to private data", buckets = ["twin-results"], sign_urls = false }
  }

  # clio's /v2/<resource> API: the function that serves each resource (the gateway routes
  # /v2/<resource>/** there; tools/check_terraform.py keeps it equal to common.web.clio.RESOURCES).
  clio_resources = {
    server             = "users"
    users              = "users"
    roles              = "roles"
    datasets           = "datasets"
    annotations        = "annotations"
    atlas              = "atlas"
    savedsearches      = "savedsearches"
    signatures         = "signatures"
    transfer           = "transfer"
    kv                 = "kv"
    "pull-request"     = "kv"
    "json-annotations" = "bodyannotations"
    neuprint           = "neuprint"
  }

  # versioned: where an overwrite or delete could lose data, old versions are kept 30 days.
  # The transfer output is not here: it is the one bucket neuroglancer reads (storage.tf).
  buckets = {
    attachments  = { purpose = "dataset attachments (ATTACHMENTS_BUCKET)" }
    signatures   = { purpose = "image signatures and their similarity index" }
    twin-results = { purpose = "results of approved twin-endpoint runs" }
    sources      = { purpose = "function source archives" }
  }

  common_env = {
    GOOGLE_CLOUD_PROJECT     = var.project
    OWNER                    = lower(var.owner)
    ALLOWED_AUDIENCES        = join(",", var.allowed_audiences)
    ALLOWED_ORIGINS          = join(",", var.allowed_origins)
    OAUTH_CLIENT_ID          = var.oauth_client_id
    OAUTH_CLIENT_SECRET      = var.oauth_client_secret
    ATTACHMENTS_BUCKET       = google_storage_bucket.bucket["attachments"].name
    SIG_BUCKET               = google_storage_bucket.bucket["signatures"].name
    TRANSFER_DEST            = "gs://${google_storage_bucket.transfer_output.name}/volumes"
    TRANSFER_FUNC            = var.transfer_func
    TRANSFER_TOPIC           = google_pubsub_topic.work["transfer"].name
    PURGE_TOPIC              = google_pubsub_topic.work["purge"].name
    TWIN_JOBS_TOPIC          = google_pubsub_topic.work["twin_jobs"].name
    TWIN_RESULTS_BUCKET      = google_storage_bucket.bucket["twin-results"].name
    TRANSFER_ATTEMPTS        = tostring(var.transfer_attempts)
    TRANSFER_TIMEOUT_SECONDS = tostring(var.transfer_timeout_seconds)
    NEUROGLANCER_URL         = var.neuroglancer_url
    GATEHOUSE_VERSION        = var.gatehouse_version
    AUDIT_RETENTION_DAYS     = tostring(var.audit_retention_days)
    EXPOSE                   = join(",", var.expose)
    NEUPRINT_TIMEOUT_SECONDS = tostring(var.neuprint_timeout_seconds)
    # clio tokens (POST /v2/server/token): only users may sign as the signer (iam.tf); every
    # function verifies with its published keys.
    CLIO_TOKEN_SIGNER          = google_service_account.clio_signer.email
    CLIO_TOKEN_TTL             = tostring(var.clio_token_ttl)
    CLIO_TOKEN_MAX_CHAIN       = tostring(var.clio_token_max_chain)
    ACCEPT_LEGACY_FLYEM_TOKENS = var.accept_legacy_flyem_tokens ? "1" : ""
    # glibc's per-thread arenas otherwise raise memory each time a new thread serves a request.
    MALLOC_ARENA_MAX = "2"
  }

  function_buckets = merge([
    for name, fn in local.functions : { for b in fn.buckets : "${name}/${b}" => { function = name, bucket = b } }
  ]...)
}

resource "google_project_service" "api" {
  for_each = toset(concat([
    "apigateway.googleapis.com", "artifactregistry.googleapis.com", "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com", "firestore.googleapis.com", "iam.googleapis.com",
    "iamcredentials.googleapis.com", "pubsub.googleapis.com", "run.googleapis.com",
    "servicecontrol.googleapis.com", "servicemanagement.googleapis.com", "storage.googleapis.com",
  ], var.flyem_secret != "" || var.neuprint_token_secret != "" ? ["secretmanager.googleapis.com"] : []))
  service            = each.value
  disable_on_destroy = false
}

resource "google_service_account" "function" {
  for_each     = local.functions
  account_id   = "gatehouse-${each.key}"
  display_name = "Gatehouse ${each.key} function"
}

resource "google_storage_bucket_object" "source" {
  for_each = local.functions
  # A new object name per archive content, so a changed archive redeploys the function.
  name   = "${each.key}-${filemd5("${var.package_dir}/${each.key}.zip")}.zip"
  bucket = google_storage_bucket.bucket["sources"].name
  source = "${var.package_dir}/${each.key}.zip"
}

resource "google_cloudfunctions2_function" "function" {
  #checkov:skip=CKV_GCP_124:API Gateway reaches the functions over their public URLs (ingress is var.ingress_settings); IAM lets only the gateway's service account invoke them
  for_each    = local.functions
  name        = "gatehouse-${each.key}"
  location    = var.region
  description = each.value.description

  build_config {
    runtime     = "python311"
    entry_point = "handle"
    source {
      storage_source {
        bucket = google_storage_bucket.bucket["sources"].name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.function[each.key].email
    ingress_settings      = var.ingress_settings
    # twins runs endpoint code in worker processes (each capped at TWIN_MEMORY_MB): more memory.
    available_memory               = each.key == "twins" ? var.twins_memory : var.function_memory
    max_instance_count             = var.max_instances
    min_instance_count             = var.min_instances
    timeout_seconds                = 300
    all_traffic_on_latest_revision = true
    environment_variables          = local.common_env
    # Off by default: clio-store's shared secret, only where DVID must accept Gatehouse's tokens.
    dynamic "secret_environment_variables" {
      for_each = var.flyem_secret != "" ? [var.flyem_secret] : []
      content {
        key        = "FLYEM_SECRET"
        project_id = var.project
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
    # neuPrint's service token (var.neuprint_token_secret): in the neuprint function only.
    dynamic "secret_environment_variables" {
      for_each = each.key == "neuprint" && var.neuprint_token_secret != "" ? [var.neuprint_token_secret] : []
      content {
        key        = "NEUPRINT_TOKEN"
        project_id = var.project
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
    # Optional VPC egress for twins (var.twins_vpc_connector): all of its traffic leaves through
    # the connector, so endpoint code reaches private data platforms without public addresses.
    vpc_connector                 = each.key == "twins" && var.twins_vpc_connector != "" ? var.twins_vpc_connector : null
    vpc_connector_egress_settings = each.key == "twins" && var.twins_vpc_connector != "" ? "ALL_TRAFFIC" : null
  }

  depends_on = [
    google_project_service.api, google_project_iam_member.firestore_user,
    google_secret_manager_secret_iam_member.flyem_secret, google_secret_manager_secret_iam_member.neuprint_token,
  ]
}
