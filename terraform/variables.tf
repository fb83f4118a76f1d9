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

variable "allowed_origins" {
  description = "CORS origins (ALLOWED_ORIGINS), e.g. the web viewer's; `*` allows any origin without credentials."
  type        = list(string)
  default     = []
}

variable "gatehouse_version" {
  description = "Version shown by /<function>/_health (GATEHOUSE_VERSION); Cloud Build passes the commit."
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
  description = "URL of the transfer network's function (TRANSFER_FUNC); empty leaves POST /transfer answering 503. The transfer function's service account must let gatehouse-transfer invoke it."
  type        = string
  default     = ""
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
