variable "project" {
  description = "Google Cloud project id to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the API gateway and the buckets."
  type        = string
  default     = "us-east4"
}

variable "firestore_location" {
  description = "Location of the Firestore database (a multi-region such as nam5, or a region)."
  type        = string
  default     = "nam5"
}

variable "owner" {
  description = "Email that is always admin (OWNER). Required: a deployment has no default owner."
  type        = string
}

variable "allowed_audiences" {
  description = "Accepted Google ID token audiences (ALLOWED_AUDIENCES). The default is the gcloud CLI's client id, so `gcloud auth print-identity-token` works."
  type        = list(string)
  default     = ["32555940559.apps.googleusercontent.com"]
}

variable "oauth_client_id" {
  description = "OAuth client the Python client signs researchers in with (OAUTH_CLIENT_ID; Google type Desktop app or TVs and Limited Input devices), also accepted as a token audience. Empty: no browser or device sign-in."
  type        = string
  default     = ""
}

variable "oauth_client_secret" {
  description = "That client's secret (OAUTH_CLIENT_SECRET), published by GET /users/_signin: not confidential for these client types (Google's docs)."
  type        = string
  default     = ""
}

variable "allowed_origins" {
  description = "CORS origins (ALLOWED_ORIGINS), e.g. the web viewer's; `*` allows any origin without credentials."
  type        = list(string)
  default     = []
}

variable "gatehouse_version" {
  description = "Build label shown by /<function>/_health as <release>+<label> (GATEHOUSE_VERSION); cloudbuild.yaml passes its build id ($BUILD_ID), which `gcloud builds describe` resolves to the build and its source."
  type        = string
  default     = "dev"
}

variable "package_dir" {
  description = "Folder holding the per-function source archives built by `make package` (<name>.zip)."
  type        = string
  default     = "../dist"
}

variable "bucket_prefix" {
  description = "Prefix of every bucket name (bucket names are global); empty means \"<project>-gatehouse\"."
  type        = string
  default     = ""
}

variable "ingress_settings" {
  description = "Ingress of every function: ALLOW_ALL (the API gateway calls the functions over their public URLs; IAM still restricts who may invoke), ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress_settings)
    error_message = "ingress_settings is ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "extra_invokers" {
  description = "Members allowed to invoke the functions directly, besides the API gateway (default: none), e.g. [\"group:gatehouse-ops@example.org\"]."
  type        = list(string)
  default     = []
}

variable "function_memory" {
  description = "Memory of each function instance."
  type        = string
  default     = "512Mi"
}

variable "max_instances" {
  description = "Most instances of each function."
  type        = number
  default     = 20
}

variable "min_instances" {
  description = "Instances kept warm per function (0 scales to zero; 1 removes most cold starts)."
  type        = number
  default     = 0
}

variable "audit_retention_days" {
  description = "Days an audit entry is kept before Firestore's TTL policy deletes it (AUDIT_RETENTION_DAYS)."
  type        = number
  default     = 400
}

variable "transfer_func" {
  description = "URL of the transfer network's function (TRANSFER_FUNC); empty leaves POST /transfer answering 503. The transfer network must let the transfer worker's service account (gatehouse-transfer-worker) invoke it."
  type        = string
  default     = ""
}

variable "transfer_network_service_account" {
  description = "Email of the service account the transfer network runs as; it is granted write on the transfer bucket (it writes each part's chunks there). Empty grants nothing."
  type        = string
  default     = ""

  validation {
    condition     = var.transfer_network_service_account == "" || can(regex("^[^@\\s]+@[^@\\s]+$", var.transfer_network_service_account))
    error_message = "transfer_network_service_account is a service account email, or empty."
  }
}

variable "transfer_timeout_seconds" {
  description = "How long one attempt at one transfer part may take (TRANSFER_TIMEOUT_SECONDS); the worker's timeout and the subscription's ack deadline add a minute to it."
  type        = number
  default     = 120

  validation {
    condition     = var.transfer_timeout_seconds >= 10 && var.transfer_timeout_seconds <= 540
    error_message = "transfer_timeout_seconds is 10-540 (the ack deadline is at most 600 s)."
  }
}

variable "transfer_attempts" {
  description = "Attempts at one transfer part before it, and its job, count as failed (TRANSFER_ATTEMPTS); below the dead-letter policy's delivery attempts."
  type        = number
  default     = 4

  validation {
    condition     = var.transfer_attempts >= 1 && var.transfer_attempts < 10
    error_message = "transfer_attempts is 1-9 (the dead-letter policy takes a message after 10 deliveries)."
  }
}

variable "neuroglancer_url" {
  description = "The neuroglancer a transfer's `addr` link opens (NEUROGLANCER_URL)."
  type        = string
  default     = "https://neuroglancer-demo.appspot.com"
}

variable "transfer_output_public" {
  description = "Let anyone read transfer volumes (allUsers, objects.get only), as neuroglancer in a browser reads them without credentials. Set false where an organisation policy refuses public access (constraints/storage.publicAccessPrevention, or domain-restricted sharing: constraints/iam.allowedPolicyMemberDomains); the bucket is then private and volumes open only for principals granted read on it."
  type        = bool
  default     = true
}

variable "neuroglancer_origins" {
  description = "Origins allowed by CORS to read the transfer bucket (the neuroglancer instances users open volumes in)."
  type        = list(string)
  default     = ["https://neuroglancer-demo.appspot.com"]

  validation {
    condition     = !contains(var.neuroglancer_origins, "*")
    error_message = "neuroglancer_origins lists origins; \"*\" is not allowed."
  }
}

variable "expose" {
  description = "What this deployment serves (EXPOSE): regular expressions over \"dataset:<name>\" and \"twin:<path>\"; anything that matches none is 404 to everyone and absent from lists. Empty serves everything."
  type        = list(string)
  default     = []
}

variable "clio_token_ttl" {
  description = "Seconds a clio token (POST /v2/server/token) lasts (CLIO_TOKEN_TTL); at least 14400: clio's clients refetch a token with less left."
  type        = number
  default     = 1814400
}

variable "clio_token_max_chain" {
  description = "Seconds after a sign-in past which tokens renewed from tokens end (CLIO_TOKEN_MAX_CHAIN)."
  type        = number
  default     = 7776000
}

variable "flyem_secret" {
  description = "Secret Manager secret id holding clio-store's FLYEM_SECRET: clio tokens are then HS256 with it, so Janelia's DVID accepts them, and every function can read it. Empty (the default): RS256 by the signer account, no shared secret."
  type        = string
  default     = ""
}

variable "neuprint_token_secret" {
  description = "Secret Manager secret id holding the token clio's neuPrint queries (POST /v2/neuprint) carry to a dataset's neuPrint server (NEUPRINT_TOKEN); only the neuprint function can read it. Empty (the default): queries go without a token."
  type        = string
  default     = ""
}

variable "neuprint_timeout_seconds" {
  description = "Seconds neuPrint has to start answering a query before it is 503 (NEUPRINT_TIMEOUT_SECONDS); at most 240."
  type        = number
  default     = 60
}

variable "accept_legacy_flyem_tokens" {
  description = "Accept tokens clio-store minted (no jti; needs flyem_secret) until they expire (ACCEPT_LEGACY_FLYEM_TOKENS)."
  type        = bool
  default     = false
}

variable "twins_memory" {
  description = "Memory of each twins instance: the function plus its endpoint worker processes (each capped at TWIN_MEMORY_MB, default 512 MiB)."
  type        = string
  default     = "2Gi"
}

variable "twins_vpc_connector" {
  description = "Serverless VPC Access connector (projects/P/locations/R/connectors/N) that twins sends ALL its traffic through, to reach private data platforms with no public address; empty: none. The connector's network needs Cloud NAT or Private Google Access for Firestore."
  type        = string
  default     = ""
}
