# One public entry point: https://<gateway>/<function>/... (SPEC §1). The gateway invokes each
# function as its own service account, the only default invoker (see iam.tf).
resource "google_api_gateway_api" "api" {
  provider = google-beta
  api_id   = "gatehouse"

  depends_on = [google_project_service.api]
}

resource "google_api_gateway_api_config" "config" {
  provider             = google-beta
  api                  = google_api_gateway_api.api.api_id
  api_config_id_prefix = "gatehouse-"

  openapi_documents {
    document {
      path = "gateway.yaml"
      contents = base64encode(templatefile("${path.module}/gateway.yaml.tftpl", {
        functions = { for name, fn in google_cloudfunctions2_function.function : name => fn.service_config[0].uri }
        methods   = ["get", "post", "put", "patch", "delete", "options"]
        # clio's /v2/<resource> at the root of the host (neuroglancer's clio URLs allow exactly
        # one path segment, v2, between the host and the dataset).
        clio = {
          for resource, function in local.clio_resources : resource => google_cloudfunctions2_function.function[function].service_config[0].uri
          if contains(keys(local.functions), function)
        }
      }))
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "gateway" {
  provider   = google-beta
  region     = var.region
  gateway_id = "gatehouse"
  api_config = google_api_gateway_api_config.config.id
}
