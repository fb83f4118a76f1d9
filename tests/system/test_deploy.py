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
    assert package.check(folder) == []
    names = set(os.listdir(folder))
    assert {"main.py", "requirements.txt", "common"} <= names
    assert not names - {"main.py", "requirements.txt", "common", package.ENDPOINT_REQUIREMENTS}


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

    target = package.write_openapi(str(tmp_path / "openapi.json"), "https://gateway.example.org")
    with open(target) as f:
        document = json.load(f)
    assert document["servers"][0]["url"] == "https://gateway.example.org"
    prefixes = {path.split("/")[1] for path in document["paths"]}
    assert prefixes == set(function_names())
    assert {tag["name"] for tag in document["tags"]} == set(function_names())


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
    assert not os.path.exists(os.path.join(archives["roles"], "common", "blobs.py"))


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
    assert "imports common.store, which the archive lacks" in broken(
        lambda c: (c / "common" / "store.py").unlink()
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
            '    atlas         = { description = "Atlas entries", buckets = [], sign_urls = false }\n',
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
