"""What can be proved offline about the deployment: the per-function archives, the Terraform
(fmt, structure, checkov) and cloudbuild.yaml (gcloud's own loader). Each check also runs on
a deliberately broken copy, which it must refuse."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
import requests

from common.version import VERSION
from tests.conftest import ROOT
from tests.utils import start_server
from tools import check_cloudbuild, check_terraform, package
from tools.emulators import free_port
from tools.gateway import function_names
from tools.workers import WORKERS

TERRAFORM = os.path.join(ROOT, "terraform")
CHECKOV = os.path.join(ROOT, ".venv-checkov", "bin", "checkov")


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """{function: unpacked folder} of archives built the way `make package` builds them."""
    out = tmp_path_factory.mktemp("dist")
    unpacked = {}
    for name in function_names():
        folder = out / name
        with zipfile.ZipFile(package.build(name, str(out))) as archive:
            archive.extractall(folder)
        unpacked[name] = str(folder)
    return unpacked


@pytest.mark.parametrize("function", function_names())
def test_archive_requirements_cover_exactly_its_imports(archives, function):
    folder = archives[function]
    assert package.check(folder, function) == []
    names = set(os.listdir(folder))
    assert {"main.py", "requirements.txt", "common"} <= names
    assert not names - {"main.py", "requirements.txt", "common", "functions", package.ENDPOINT_REQUIREMENTS}


@pytest.mark.parametrize("function", function_names())
def test_archive_serves_health_alone(archives, function, tmp_path):
    """functions-framework on the unpacked archive, with only the archive on the path: its health
    and its docs page."""
    folder, port = archives[function], free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    argv = [
        os.path.join(os.path.dirname(sys.executable), "functions-framework"),
        "--target",
        "handle",
        "--source",
        os.path.join(folder, "main.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = start_server(
        argv,
        {**env, "PYTHONPATH": folder, "GATEHOUSE_VERSION": "archive"},
        f"http://127.0.0.1:{port}/_health",
        str(tmp_path / "serve.log"),
    )
    try:
        r = requests.get(f"http://127.0.0.1:{port}/_health", timeout=5)
        assert r.json() == {"status": "ok", "function": function, "version": f"{VERSION}+archive"}
        # The docs page and its files come from the archive's own requirements (no CDN).
        assert "flask-swagger-ui" in package.pins(os.path.join(folder, "requirements.txt"))
        assert requests.get(f"http://127.0.0.1:{port}/_docs", timeout=5).status_code == 200
        script = requests.get(f"http://127.0.0.1:{port}/_docs/swagger-ui-bundle.js", timeout=5)
        assert script.status_code == 200 and len(script.content) > 100_000
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_package_writes_the_bundle_document(tmp_path):
    """`make package` writes dist/openapi.json: every function's operations, for the gateway."""
    import json

    from common.web import clio

    target = package.write_openapi(str(tmp_path / "openapi.json"), "https://gateway.example.org")
    with open(target) as f:
        document = json.load(f)
    assert document["servers"][0]["url"] == "https://gateway.example.org"
    prefixes = {path.split("/")[1] for path in document["paths"]}
    assert prefixes == set(function_names()) | {"v2"}  # clio's routes, served beside the functions'
    assert {path.split("/")[2] for path in document["paths"] if path.startswith("/v2/")} <= set(
        clio.RESOURCES
    )
    assert {tag["name"] for tag in document["tags"]} == set(function_names()) | {clio.TAG}


@pytest.mark.parametrize("worker", WORKERS, ids=[f"{w.function}.{w.target}" for w in WORKERS])
def test_archive_serves_its_worker_alone(archives, worker, tmp_path):
    """The worker's entry point (terraform/pubsub.tf deploys it from the same archive) answers a
    Pub/Sub push: a message naming no work is acknowledged (200)."""
    folder, port = archives[worker.function], free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    argv = [
        os.path.join(os.path.dirname(sys.executable), "functions-framework"),
        "--target",
        worker.target,
        "--source",
        os.path.join(folder, "main.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    push = {
        "message": {"data": base64.b64encode(b'{"nothing": 1}').decode(), "messageId": "1", "attributes": {}},
        "subscription": "projects/p/subscriptions/s",
    }
    log = str(tmp_path / "worker.log")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv, env={**env, "PYTHONPATH": folder}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.post(f"http://127.0.0.1:{port}/", json=push, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, open(log).read()
                time.sleep(0.1)
        assert r.status_code == 200, (r.status_code, r.text, open(log).read())
        assert "dropped a message" in open(log).read()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_only_datasets_gets_the_storage_client(archives):
    def requirements(name):
        with open(os.path.join(archives[name], "requirements.txt")) as f:
            return f.read()

    assert "google-cloud-storage" in requirements("datasets")
    assert "google-cloud-storage" not in requirements("roles")
    assert not os.path.exists(os.path.join(archives["roles"], "common", "storage", "blobs.py"))


def test_requirement_check_refuses_broken_archives(archives, tmp_path):
    def broken(change):
        copy = tmp_path / f"copy{len(os.listdir(tmp_path))}"
        shutil.copytree(archives["datasets"], copy)
        change(copy)
        return "\n".join(package.check(str(copy)))

    def drop(line):
        def change(copy):
            path = copy / "requirements.txt"
            path.write_text("".join(x for x in path.read_text().splitlines(True) if not x.startswith(line)))

        return change

    assert "google.cloud.storage (google-cloud-storage), not in requirements.txt" in broken(
        drop("google-cloud-storage")
    )
    assert "lacks functions-framework" in broken(drop("functions-framework"))
    assert "imports common.storage.store, which the archive lacks" in broken(
        lambda c: (c / "common" / "storage" / "store.py").unlink()
    )
    assert "lists mmh3, which nothing imports" in broken(
        lambda c: (c / "requirements.txt").write_text((c / "requirements.txt").read_text() + "mmh3==5.3.1\n")
    )
    assert "no main.py" in broken(lambda c: (c / "main.py").unlink())


def test_twins_archive_carries_the_libraries_endpoint_code_may_import(archives, tmp_path):
    """Endpoint code imports what functions/twins/endpoint_requirements.txt declares (boto3);
    the function itself does not, so `make package` adds them to the twins archive."""
    folder = archives["twins"]
    declared = package.pins(os.path.join(ROOT, "functions", "twins", package.ENDPOINT_REQUIREMENTS))
    assert "boto3" in declared
    assert os.path.isfile(os.path.join(folder, package.ENDPOINT_REQUIREMENTS))
    listed = package.pins(os.path.join(folder, "requirements.txt"))
    assert all(listed[name] == line for name, line in declared.items())
    assert "boto3" not in package.pins(os.path.join(archives["datasets"], "requirements.txt"))
    copy = tmp_path / "twins"
    shutil.copytree(folder, copy)
    requirements = copy / "requirements.txt"
    requirements.write_text(
        "".join(x for x in requirements.read_text().splitlines(True) if not x.startswith("boto3"))
    )
    assert "endpoint_requirements.txt lists boto3, which requirements.txt lacks" in "\n".join(
        package.check(str(copy))
    )
    # The sandbox's worker side is read by path, imported by nothing: the check still misses it.
    assert os.path.isfile(os.path.join(folder, "functions", "twins", "sandbox_worker.py"))
    (copy / "functions" / "twins" / "sandbox_worker.py").unlink()
    assert "the archive lacks functions/twins/sandbox_worker.py" in "\n".join(
        package.check(str(copy), "twins")
    )


# -- Terraform ---------------------------------------------------------------------------------


def _copy_terraform(tmp_path, edit=None, extra: str = ""):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    if edit:
        path, old, new = edit
        text = (copy / path).read_text()
        assert old in text, old
        (copy / path).write_text(text.replace(old, new))
    if extra:
        (copy / "extra.tf").write_text(extra)
    return str(copy)


def _fmt_check(directory):
    return subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", directory],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
    )


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_is_formatted(tmp_path):
    assert _fmt_check(TERRAFORM).returncode == 0
    badly = _copy_terraform(tmp_path, ("outputs.tf", 'output "gateway_url" {', 'output "gateway_url"   {'))
    assert _fmt_check(badly).returncode != 0


def test_terraform_structure():
    assert check_terraform.problems(TERRAFORM) == []


def test_clio_tokens_need_no_secret_and_only_users_signs():
    """By default no function holds a secret for clio tokens (RS256 by the signer account's
    Google-held key); only the users function may sign as the signer; FLYEM_SECRET reaches the
    functions only when var.flyem_secret names a Secret Manager secret."""
    config = check_terraform.load(TERRAFORM)
    resources = config["resource"]
    assert (
        config["locals"]["common_env"]["CLIO_TOKEN_SIGNER"] == "${google_service_account.clio_signer.email}"
    )
    # OAUTH_CLIENT_SECRET is an installed app's client secret, which is not confidential (Google
    # says so; GET /users/_signin hands it to anyone): the sign-in client's, not a token key.
    assert not [k for k in config["locals"]["common_env"] if "SECRET" in k and k != "OAUTH_CLIENT_SECRET"]
    grants = resources["google_service_account_iam_member"].values()
    on_signer = [g for g in grants if "clio_signer" in str(g.get("service_account_id"))]
    assert on_signer == [resources["google_service_account_iam_member"]["clio_signer_users"]]
    assert on_signer[0]["member"] == 'serviceAccount:${google_service_account.function["users"].email}'
    secret = _secret_variables(config)["FLYEM_SECRET"]
    assert secret["for_each"] == '${var.flyem_secret != "" ? [var.flyem_secret] : []}'
    assert re.search(r'variable "flyem_secret" \{[^}]*default\s*=\s*""', config["text"])


def _secret_variables(config) -> dict:
    """The functions' secret environment variables (dynamic blocks), by variable name."""
    service = config["resource"]["google_cloudfunctions2_function"]["function"]["service_config"][0]
    blocks = [
        d["secret_environment_variables"] for d in service["dynamic"] if "secret_environment_variables" in d
    ]
    return {block["content"][0]["key"]: block for block in blocks}


def test_only_the_neuprint_function_holds_the_neuprint_token():
    """NEUPRINT_TOKEN is mounted from Secret Manager into the neuprint function alone, and only
    its service account may read the secret; without var.neuprint_token_secret there is none."""
    config = check_terraform.load(TERRAFORM)
    secret = _secret_variables(config)["NEUPRINT_TOKEN"]
    assert secret["for_each"] == (
        '${each.key == "neuprint" && var.neuprint_token_secret != "" ? [var.neuprint_token_secret] : []}'
    )
    grant = config["resource"]["google_secret_manager_secret_iam_member"]["neuprint_token"]
    assert grant["count"] == '${var.neuprint_token_secret != "" ? 1 : 0}'
    assert grant["member"] == 'serviceAccount:${google_service_account.function["neuprint"].email}'
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert "NEUPRINT_TOKEN" not in config["locals"]["common_env"]
    assert re.search(r'variable "neuprint_token_secret" \{[^}]*default\s*=\s*""', config["text"])


def test_twins_vpc_egress_is_optional_and_takes_all_traffic():
    """var.twins_vpc_connector set: twins (only) sends ALL its traffic through the connector."""
    config = check_terraform.load(TERRAFORM)
    service = config["resource"]["google_cloudfunctions2_function"]["function"]["service_config"][0]
    assert (
        service["vpc_connector"]
        == '${each.key == "twins" && var.twins_vpc_connector != "" ? var.twins_vpc_connector : null}'
    )
    assert service["vpc_connector_egress_settings"] == (
        '${each.key == "twins" && var.twins_vpc_connector != "" ? "ALL_TRAFFIC" : null}'
    )
    assert re.search(r'variable "twins_vpc_connector" \{[^}]*default\s*=\s*""', config["text"])


def test_the_public_transfer_output_can_be_turned_off():
    """Organisation policies (constraints/storage.publicAccessPrevention, domain-restricted
    sharing) refuse a grant to allUsers: var.transfer_output_public = false makes none, and the
    bucket's public access prevention is then enforced like the others'."""
    config = check_terraform.load(TERRAFORM)
    assert re.search(
        r'variable "transfer_output_public" \{[^}]*type\s*=\s*bool[^}]*default\s*=\s*true', config["text"]
    )
    resources = config["resource"]
    public = resources["google_storage_bucket_iam_member"]["transfer_output_public_read"]
    assert public["member"] == "allUsers"
    assert public["count"] == "${var.transfer_output_public ? 1 : 0}"
    bucket = resources["google_storage_bucket"]["transfer_output"]
    assert bucket["public_access_prevention"] == '${var.transfer_output_public ? "inherited" : "enforced"}'


# What the build account needs to apply terraform/, by the kind of resource it makes: the
# predefined role carrying the permissions (roles/editor lacks setIamPolicy on Cloud Run
# services and Pub/Sub topics and subscriptions). README's Deploy grants these and says why.
DEPLOYER_ROLES = {
    "google_project_service": "roles/serviceusage.serviceUsageAdmin",
    "google_service_account": "roles/iam.serviceAccountAdmin",
    "google_service_account_iam_member": "roles/iam.serviceAccountAdmin",
    "google_project_iam_member": "roles/resourcemanager.projectIamAdmin",
    "google_storage_bucket": "roles/storage.admin",
    "google_storage_bucket_iam_member": "roles/storage.admin",
    "google_storage_bucket_object": "roles/storage.admin",
    "google_firestore_database": "roles/datastore.owner",
    "google_firestore_index": "roles/datastore.owner",
    "google_firestore_field": "roles/datastore.owner",
    "google_cloudfunctions2_function": "roles/cloudfunctions.developer",
    "google_cloud_run_service_iam_member": "roles/run.admin",
    "google_pubsub_topic": "roles/pubsub.admin",
    "google_pubsub_topic_iam_member": "roles/pubsub.admin",
    "google_pubsub_subscription": "roles/pubsub.admin",
    "google_pubsub_subscription_iam_member": "roles/pubsub.admin",
    "google_api_gateway_api": "roles/apigateway.admin",
    "google_api_gateway_api_config": "roles/apigateway.admin",
    "google_api_gateway_gateway": "roles/apigateway.admin",
    "google_secret_manager_secret_iam_member": "roles/secretmanager.admin",
}
# Besides: acting as the accounts terraform makes (functions and workers run as them, push
# subscriptions sign tokens as the pushers, the gateway calls as its account); each function's
# own source build (Cloud Build); a VPC connector, only with twins_vpc_connector.
OTHER_BUILD_ROLES = {
    "roles/iam.serviceAccountUser",
    "roles/cloudbuild.builds.builder",
    "roles/vpcaccess.user",
}


def _readme_build_roles() -> set[str]:
    """The roles README's Deploy grants to the build account ($BUILD_SA)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```text\n(.*?)```", f.read(), re.S)
    grants = [b for b in blocks if "--member=serviceAccount:$BUILD_SA" in b]
    assert len(grants) == 1, "one block grants the build account its roles"
    return set(re.findall(r"roles/[A-Za-z.]+", grants[0]))


def test_the_build_account_gets_the_predefined_roles_terraform_needs():
    resources = check_terraform.load(TERRAFORM)["resource"]
    assert set(resources) <= set(DEPLOYER_ROLES), f"which role makes {set(resources) - set(DEPLOYER_ROLES)}?"
    needed = {DEPLOYER_ROLES[kind] for kind in resources}
    assert _readme_build_roles() == needed | OTHER_BUILD_ROLES
    with open(os.path.join(ROOT, "README.md")) as f:
        deploy = f.read().split("\n## Deploy\n", 1)[1]
    for role in needed | OTHER_BUILD_ROLES:  # each with its reason, in the table below the grant
        assert re.search(rf"^\| `{re.escape(role)}` \|", deploy, re.M), role


def test_no_primitive_role_is_granted_anywhere():
    """Not to the build account (README, cloudbuild.yaml), not in terraform/."""
    paths = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "cloudbuild.yaml")]
    paths += [
        os.path.join(TERRAFORM, name) for name in os.listdir(TERRAFORM) if name.endswith((".tf", ".tftpl"))
    ]
    for path in paths:
        with open(path) as f:
            text = f.read()
        for role in check_terraform.PRIMITIVE_ROLES:
            assert role not in text, (path, role)


BROKEN_TERRAFORM = {
    "a bucket open to the public": (
        (
            "storage.tf",
            'public_access_prevention    = "enforced"',
            'public_access_prevention    = "inherited"',
        ),
        "",
        "lacks public_access_prevention",
    ),
    "a bucket with ACLs": (
        ("storage.tf", "uniform_bucket_level_access = true", "uniform_bucket_level_access = false"),
        "",
        "lacks uniform_bucket_level_access",
    ),
    "a function not deployed": (
        (
            "main.tf",
            '    atlas           = { description = "Atlas entries", buckets = [], sign_urls = false }\n',
            "",
        ),
        "",
        "'atlas' (functions/atlas) has no entry",
    ),
    "an unused service account": (
        None,
        'resource "google_service_account" "spare" {\n  account_id = "spare"\n}\n',
        "service account 'spare' is used by nothing",
    ),
    "a primitive role": (
        None,
        'resource "google_project_iam_member" "too_much" {\n  project = var.project\n'
        '  role    = "roles/editor"\n  member  = "user:x@example.org"\n}\n',
        "roles/editor",
    ),
    "an old provider": (
        ("versions.tf", 'version = "~> 6.0"', 'version = "~> 5.0"'),
        "",
        "provider google must be pinned",
    ),
    # only the transfer output is public, get-only, and CORS names neuroglancer's origins
    "public read on a private bucket": (
        None,
        'resource "google_storage_bucket_iam_member" "leak" {\n'
        '  bucket = google_storage_bucket.bucket["attachments"].name\n'
        '  role   = "roles/storage.objectViewer"\n  member = "allUsers"\n}\n',
        "google_storage_bucket_iam_member.leak opens access to the public",
    ),
    "public write on the transfer output": (
        None,
        'resource "google_storage_bucket_iam_member" "vandal" {\n'
        "  bucket = google_storage_bucket.transfer_output.name\n"
        '  role   = "roles/storage.objectAdmin"\n  member = "allUsers"\n}\n',
        "google_storage_bucket_iam_member.vandal opens access to the public",
    ),
    "the public read not gated by var.transfer_output_public": (
        ("storage.tf", "  count  = var.transfer_output_public ? 1 : 0\n", ""),
        "",
        "not gated by var.transfer_output_public",
    ),
    "an account id Google refuses": (
        (
            "pubsub.tf",
            'account_id   = "gatehouse-${replace(each.key, "_", "-")}-pusher"',
            'account_id   = "gatehouse-${each.key}-pusher"',
        ),
        "",
        "account id 'gatehouse-twin_jobs-pusher' is not 6-30",
    ),
    "a function name Cloud Run refuses": (
        (
            "pubsub.tf",
            'name        = "gatehouse-${replace(each.key, "_", "-")}-worker"',
            'name        = "gatehouse-${each.key}-worker"',
        ),
        "",
        "name 'gatehouse-twin_jobs-worker' is not a Cloud Run service name",
    ),
    "the transfer output without CORS": (
        ("storage.tf", "  cors {\n    origin ", '  dynamic "x" {\n    origin '),
        "",
        "has no cors rule",
    ),
    "CORS for any origin": (
        ("storage.tf", "origin          = var.neuroglancer_origins", 'origin          = ["*"]'),
        "",
        'CORS origin "*"',
    ),
    "the transfer network cannot write": (
        (
            "storage.tf",
            'role   = "roles/storage.objectAdmin"\n  member = "serviceAccount:${var.transfer_network',
            'role   = "roles/storage.objectViewer"\n  member = "serviceAccount:${var.transfer_network',
        ),
        "",
        "transfer network's service account",
    ),
    "the worker not deployed": (
        ("pubsub.tf", 'entry_point = "work"', 'entry_point = "handle"'),
        "",
        "worker transfer.work has no Cloud Function",
    ),
    "the worker without dead letters": (
        (
            "pubsub.tf",
            "dead_letter_topic     = google_pubsub_topic.work_dead_letter[each.key].id",
            "# no dead letters",
        ),
        "",
        "their subscription has no dead_letter_policy",
    ),
    "the purge worker not deployed": (
        ("pubsub.tf", 'entry_point = "purge_work"', 'entry_point = "handle"'),
        "",
        "worker datasets.purge_work has no Cloud Function",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TERRAFORM))
def test_terraform_structure_refuses_broken_copies(tmp_path, case):
    edit, extra, expected = BROKEN_TERRAFORM[case]
    found = check_terraform.problems(_copy_terraform(tmp_path, edit, extra))
    assert any(expected in p for p in found), found


def _checkov(directory):
    return subprocess.run(
        [CHECKOV, "-d", directory, "--framework", "terraform", "--skip-download", "--compact", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(not os.path.exists(CHECKOV), reason="make test installs checkov in .venv-checkov")
def test_checkov_passes_and_refuses_a_broken_copy(tmp_path):
    done = _checkov(TERRAFORM)
    assert done.returncode == 0, done.stdout + done.stderr
    badly = _copy_terraform(
        tmp_path, ("storage.tf", "uniform_bucket_level_access = true", "uniform_bucket_level_access = false")
    )
    done = _checkov(badly)
    assert done.returncode != 0 and re.search(r"CKV_GCP_29", done.stdout), done.stdout
    # public read is skipped, with its reason, on the transfer output only: elsewhere it fails
    leak = _copy_terraform(
        tmp_path / "leak",
        extra='resource "google_storage_bucket_iam_member" "leak" {\n'
        '  bucket = google_storage_bucket.bucket["attachments"].name\n'
        '  role   = "roles/storage.objectViewer"\n  member = "allUsers"\n}\n',
    )
    done = _checkov(leak)
    assert done.returncode != 0 and re.search(r"CKV_GCP_28", done.stdout), done.stdout


def test_checkov_skips_are_justified():
    for path in os.listdir(TERRAFORM):
        if path.endswith(".tf"):
            with open(os.path.join(TERRAFORM, path)) as f:
                for skip in re.findall(r"checkov:skip=([^\n]*)", f.read()):
                    check_id, _, reason = skip.partition(":")
                    assert re.fullmatch(r"CKV2?_[A-Z]+_\d+", check_id) and len(reason.split()) >= 5, skip


# -- Cloud Build -------------------------------------------------------------------------------


def test_cloudbuild_loads_with_gclouds_own_loader(tmp_path):
    done = check_cloudbuild.check(os.path.join(ROOT, "cloudbuild.yaml"))
    assert done.returncode == 0, done.stderr
    assert "test, package, terraform-init, terraform-plan, terraform-apply, smoke" in done.stdout
    with open(os.path.join(ROOT, "cloudbuild.yaml")) as f:
        text = f.read()
    for name, broken, message in [
        ("unknown-field", text.replace("    dir: terraform\n", "    dirr: terraform\n", 1), "dirr"),
        ("bad-substitution", text.replace("  _REGION: us-east4", "  REGION: us-east4"), "REGION"),
        ("no-steps", "steps: []\n", "at least one step"),
    ]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(broken)
        done = check_cloudbuild.check(str(path))
        assert done.returncode != 0 and message in done.stderr, (name, done.stderr[-500:])


def _builder_images(text: str) -> list[str]:
    """Each step's image in a cloudbuild.yaml text, its substitutions replaced by their defaults."""
    import yaml

    config = yaml.safe_load(text)
    defaults = {k: str(v) for k, v in config.get("substitutions", {}).items()}
    return [
        re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m[1] or m[2], m[0]), step["name"])
        for step in config["steps"]
    ]


def _unpinned(images: list[str]) -> list[str]:
    """Images whose tag is not a full version (x.y.z, with an optional -variant)."""
    return [i for i in images if not re.search(r":\d+\.\d+\.\d+(-[a-z]+)?$", i)]


def test_cloudbuild_builder_images_are_pinned_by_version():
    """A builder image named by a moving tag (latest, emulators, 1.11) changes under the build."""
    with open(os.path.join(ROOT, "cloudbuild.yaml")) as f:
        text = f.read()
    images = _builder_images(text)
    assert images and _unpinned(images) == [], images
    assert _unpinned(["gcr.io/google.com/cloudsdktool/google-cloud-cli:emulators"])
    assert _unpinned(["hashicorp/terraform:1.11", "hashicorp/terraform:latest", "hashicorp/terraform"])


def test_the_build_label_is_what_the_docs_say():
    """Cloud Build passes its build id as gatehouse_version ($COMMIT_SHA is empty in a
    `gcloud builds submit`); the variable and the README say so."""
    with open(os.path.join(ROOT, "cloudbuild.yaml")) as f:
        assert "-var=gatehouse_version=$BUILD_ID" in f.read()
    config = check_terraform.load(TERRAFORM)
    described = re.search(r'variable "gatehouse_version" \{\s*description\s*=\s*"([^"]*)"', config["text"])
    assert described and "build id" in described[1] and "commit" not in described[1]
