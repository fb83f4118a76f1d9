"""The Terraform structure check (offline: the google provider cannot be downloaded here).

Loads every .tf file with python-hcl2 and reports what breaks the deployment's rules:
every function in functions/ has a Cloud Function (one map, for_each); every background
worker (tools/workers.py) has a Cloud Function on its entry point behind a push subscription
with a retry policy and a dead-letter topic; every bucket has uniform access and enforced
public-access prevention, except the transfer output, which only neuroglancer's origins may
read by CORS and only allUsers' get-only read opens, made only when var.transfer_output_public
is true (organisation policies may refuse it); nothing else is granted to allUsers or
allAuthenticatedUsers; the transfer network's service account may write the transfer output;
every service account is used; service account ids and function names are ones Google accepts
(checked for each key of their for_each map); no primitive role (owner, editor, viewer) is granted; the
google providers are ~> 6.
`python -m tools.check_terraform [dir]` prints the problems and exits 1 if there are any.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
# The one bucket read without credentials (neuroglancer opens transfer volumes in the browser),
# and the only roles the public may have on it: objects.get, nothing else.
PUBLIC_READ_BUCKET = "transfer_output"
PUBLIC_READ_ROLES = ("roles/storage.legacyObjectReader", "roles/storage.objectViewer")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
PUBLIC_SWITCH = "var.transfer_output_public"


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of strings and labels; drop them, recursively."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {
            _unquote(k): _unquote(v) for k, v in value.items() if not k.startswith("__")
        }  # __is_block__, __comments__
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


def load(directory: str) -> dict[str, Any]:
    """{"resource": {type: {name: body}}, "locals": {...}, "terraform": [...], "text": str}."""
    import hcl2

    config: dict[str, Any] = {"resource": {}, "locals": {}, "terraform": [], "text": ""}
    for path in sorted(glob.glob(os.path.join(directory, "*.tf"))):
        with open(path) as f:
            text = f.read()
        config["text"] += text
        parsed = _unquote(hcl2.loads(text))
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                config["resource"].setdefault(rtype, {}).update(named)
        for block in parsed.get("locals", []):
            config["locals"].update(block)
        config["terraform"] += parsed.get("terraform", [])
    return config


def problems(directory: str, functions_dir: str = os.path.join(ROOT, "functions")) -> list[str]:
    config = load(directory)
    resources = config["resource"]
    found: list[str] = []

    # Every function in functions/ is deployed, from one map.
    wanted = {
        n for n in os.listdir(functions_dir) if os.path.isfile(os.path.join(functions_dir, n, "main.py"))
    }
    declared = set(config["locals"].get("functions", {}))
    for name in sorted(wanted - declared):
        found.append(f"function {name!r} (functions/{name}) has no entry in local.functions")
    for name in sorted(declared - wanted):
        found.append(f"local.functions has {name!r}, which is not in functions/")
    cloud_functions = resources.get("google_cloudfunctions2_function", {})
    if not any(body.get("for_each") == "${local.functions}" for body in cloud_functions.values()):
        found.append("no google_cloudfunctions2_function is made for_each = local.functions")

    found += _worker_problems(resources, config["locals"].get("workers", {}))

    # clio's /v2/<resource> routes go to the functions that serve them (common.web.clio).
    from common.web import clio

    routed = config["locals"].get("clio_resources", {})
    if routed != clio.RESOURCES:
        found.append(f"local.clio_resources is {routed}, not common.web.clio.RESOURCES {clio.RESOURCES}")

    # Buckets: uniform access, always; public-access prevention but on the transfer output.
    for name, body in resources.get("google_storage_bucket", {}).items():
        if body.get("uniform_bucket_level_access") is not True:
            found.append(f"bucket {name!r} lacks uniform_bucket_level_access = true")
        if name == PUBLIC_READ_BUCKET:
            found += _public_bucket_problems(name, body)
        elif body.get("public_access_prevention") != "enforced":
            found.append(f'bucket {name!r} lacks public_access_prevention = "enforced"')
    found += _public_member_problems(resources)
    bucket_ref = f"google_storage_bucket.{PUBLIC_READ_BUCKET}.name"
    if not any(
        bucket_ref in str(body.get("bucket"))
        and "var.transfer_network_service_account" in str(body.get("member"))
        and body.get("role") in ("roles/storage.objectAdmin", "roles/storage.objectCreator")
        for body in resources.get("google_storage_bucket_iam_member", {}).values()
    ):
        found.append(
            "the transfer network's service account (var.transfer_network_service_account) "
            f"may not write bucket {PUBLIC_READ_BUCKET!r}"
        )

    # Every service account is referenced by some other resource.
    serialized = {f"{t}.{n}": json.dumps(b) for t, named in resources.items() for n, b in named.items()}
    for name in resources.get("google_service_account", {}):
        address = f"google_service_account.{name}"
        if not any(address in text for other, text in serialized.items() if other != address):
            found.append(f"service account {name!r} is used by nothing")

    # Names Google refuses at plan time, for each key of their for_each map.
    for name, body in resources.get("google_service_account", {}).items():
        for account_id in _expanded(body.get("account_id", ""), body.get("for_each"), config["locals"]):
            if not re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", account_id):
                found.append(
                    f"service account {name!r}: account id {account_id!r} is not 6-30 lowercase "
                    "letters, digits and hyphens"
                )
    for name, body in resources.get("google_cloudfunctions2_function", {}).items():
        for function in _expanded(body.get("name", ""), body.get("for_each"), config["locals"]):
            if not re.fullmatch(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", function):
                found.append(f"function {name!r}: name {function!r} is not a Cloud Run service name")

    # No primitive roles, anywhere.
    for role in PRIMITIVE_ROLES:
        if re.search(rf'"{re.escape(role)}"', config["text"]):
            found.append(f"the primitive role {role} is granted; grant a predefined role instead")

    # The providers.
    versions = {}
    for block in config["terraform"]:
        for providers in block.get("required_providers", []):
            versions.update({name: spec.get("version") for name, spec in providers.items()})
    for provider in ("google", "google-beta"):
        if not re.fullmatch(r"~>\s*6(\.\d+)*", versions.get(provider) or ""):
            found.append(f"provider {provider} must be pinned ~> 6, not {versions.get(provider)!r}")
    return found


def _expanded(template: str, for_each: Any, local_values: dict[str, Any]) -> list[str]:
    """`template` for each key of a `for_each = local.<map>`: `${each.key}` and
    `${replace(each.key, "_", "-")}` filled in (other expressions are left as they are)."""
    match = re.fullmatch(r"\$\{local\.(\w+)\}", str(for_each))
    keys = list(local_values.get(match[1], {})) if match else [""]
    return [
        template.replace("${each.key}", key).replace('${replace(each.key, "_", "-")}', key.replace("_", "-"))
        for key in keys
    ]


def _worker_problems(resources: dict[str, Any], workers: dict[str, Any]) -> list[str]:
    """Each worker of tools/workers.py has an entry in local.workers (its function's archive and
    entry point); the worker functions are made for_each = local.workers from those archives and
    entry points, and pushed to by subscriptions with a retry policy and a dead-letter topic."""
    from tools.workers import WORKERS

    found = []
    for worker in WORKERS:
        if not any(
            w.get("function") == worker.function and w.get("entry_point") == worker.target
            for w in workers.values()
        ):
            found.append(
                f"worker {worker.function}.{worker.target} has no Cloud Function on entry point "
                f"{worker.target!r} of the {worker.function} archive (no entry in local.workers)"
            )
    functions = [
        name
        for name, body in resources.get("google_cloudfunctions2_function", {}).items()
        if body.get("for_each") == "${local.workers}"
        and any(
            c.get("entry_point") == "${each.value.entry_point}" and "source[each.value.function]" in str(c)
            for c in body.get("build_config", [])
        )
    ]
    if not functions:
        found.append(
            "no google_cloudfunctions2_function is made for_each = local.workers from each "
            "worker's archive and entry point"
        )
        return found
    pushed = [
        body
        for body in resources.get("google_pubsub_subscription", {}).values()
        if body.get("for_each") == "${local.workers}"
        and any(
            f"google_cloudfunctions2_function.{name}[each.key]" in json.dumps(body.get("push_config"))
            for name in functions
        )
    ]
    if not pushed:
        found.append("workers: no push subscription (for_each = local.workers) reaches them")
    for body in pushed:
        if not body.get("retry_policy"):
            found.append("workers: their subscription has no retry_policy")
        if not any(p.get("dead_letter_topic") for p in body.get("dead_letter_policy", [])):
            found.append("workers: their subscription has no dead_letter_policy")
    return found


def _public_bucket_problems(name: str, body: dict[str, Any]) -> list[str]:
    """The publicly readable bucket: CORS for named origins, reading methods only."""
    found = []
    cors = body.get("cors") or []
    if not cors:
        found.append(f"bucket {name!r} is readable by neuroglancer but has no cors rule for its origins")
    for rule in cors:
        if "*" in json.dumps(rule.get("origin")):
            found.append(f'bucket {name!r}: CORS origin "*"; name the neuroglancer origins')
        if set(rule.get("method") or []) - {"GET", "HEAD"}:
            found.append(f"bucket {name!r}: CORS allows more than GET and HEAD")
    return found


def _public_member_problems(resources: dict[str, Any]) -> list[str]:
    """allUsers / allAuthenticatedUsers only as get-only readers of the transfer output, and
    only when var.transfer_output_public is true."""
    found = []
    for rtype, named in resources.items():
        for name, body in named.items():
            text = json.dumps(body)
            if not any(f'"{m}"' in text or f"{m}" in str(body.get("member", "")) for m in PUBLIC_MEMBERS):
                continue
            allowed = (
                rtype == "google_storage_bucket_iam_member"
                and body.get("role") in PUBLIC_READ_ROLES
                and body.get("bucket") == f"${{google_storage_bucket.{PUBLIC_READ_BUCKET}.name}}"
            )
            if not allowed:
                found.append(
                    f"{rtype}.{name} opens access to the public; only get-only read of "
                    f"bucket {PUBLIC_READ_BUCKET!r} may"
                )
            elif PUBLIC_SWITCH not in str(body.get("count")):
                found.append(f"{rtype}.{name} is public but not gated by {PUBLIC_SWITCH} (count)")
    return found


if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "terraform")
    issues = problems(directory)
    print("\n".join(issues) or f"{directory}: the structure checks pass")
    sys.exit(1 if issues else 0)
