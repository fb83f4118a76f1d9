"""The Terraform structure check (offline: the google provider cannot be downloaded here).

Loads every .tf file with python-hcl2 and reports what breaks the deployment's rules:
every function in functions/ has a Cloud Function (one map, for_each); every bucket has
uniform access and enforced public-access prevention; every service account is used; no
primitive role (owner, editor, viewer) is granted; the google providers are ~> 6.
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


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of strings and labels; drop them, recursively."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not k.startswith("__")}  # __is_block__, __comments__
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
    wanted = {n for n in os.listdir(functions_dir) if os.path.isfile(os.path.join(functions_dir, n, "main.py"))}
    declared = set(config["locals"].get("functions", {}))
    for name in sorted(wanted - declared):
        found.append(f"function {name!r} (functions/{name}) has no entry in local.functions")
    for name in sorted(declared - wanted):
        found.append(f"local.functions has {name!r}, which is not in functions/")
    cloud_functions = resources.get("google_cloudfunctions2_function", {})
    if not any(body.get("for_each") == "${local.functions}" for body in cloud_functions.values()):
        found.append("no google_cloudfunctions2_function is made for_each = local.functions")

    # Buckets: uniform access and public-access prevention, always.
    for name, body in resources.get("google_storage_bucket", {}).items():
        if body.get("uniform_bucket_level_access") is not True:
            found.append(f"bucket {name!r} lacks uniform_bucket_level_access = true")
        if body.get("public_access_prevention") != "enforced":
            found.append(f"bucket {name!r} lacks public_access_prevention = \"enforced\"")

    # Every service account is referenced by some other resource.
    serialized = {f"{t}.{n}": json.dumps(b) for t, named in resources.items() for n, b in named.items()}
    for name in resources.get("google_service_account", {}):
        address = f"google_service_account.{name}"
        if not any(address in text for other, text in serialized.items() if other != address):
            found.append(f"service account {name!r} is used by nothing")

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


if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "terraform")
    issues = problems(directory)
    print("\n".join(issues) or f"{directory}: the structure checks pass")
    sys.exit(1 if issues else 0)
