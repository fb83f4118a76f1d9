# Copy to terraform.tfvars (or pass with -var-file) and fill in.
project            = "my-gatehouse-project"
owner              = "pi@example.org"
region             = "us-east4"
firestore_location = "nam5"
allowed_origins    = ["https://viewer.example.org"]
# allowed_audiences = ["32555940559.apps.googleusercontent.com", "<your web client id>"]
# extra_invokers    = ["group:gatehouse-ops@example.org"]
# min_instances     = 1
# transfer_func                    = "https://transfer-xxxx.a.run.app"
# transfer_network_service_account = "transfer@other-project.iam.gserviceaccount.com"
# transfer_output_public           = false   # an organisation policy refuses public buckets
