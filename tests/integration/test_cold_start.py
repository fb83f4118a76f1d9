"""Cold start: what a fresh instance loads before its first answer (issue 24). roles answers
from the caller's record alone, so its first request must load no pydantic (48 ms of import);
a function that needs a model still gets it, on first use."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.utils import server_env

FIRST_REQUEST = """
import json, sys
from functions_framework import create_app
client = create_app("handle", "functions/roles/main.py").test_client()
answers = [client.get(path, headers={"Authorization": "Bearer " + sys.argv[1]}) for path in ("/roles", "/v2/roles")]
print(json.dumps({"status": [a.status_code for a in answers], "bodies": [a.get_json() for a in answers],
                  "pydantic": sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core"))}))
"""


def test_roles_first_answers_load_no_pydantic(test_env, api):
    api.add_user("someone@example.com", global_roles=["clio_general"], groups=["lab"])
    done = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, api.token("someone@example.com")],
        cwd=ROOT,
        env=server_env(test_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["status"] == [200, 200]
    assert seen["pydantic"] == []
    roles, clio_user = seen["bodies"]
    assert roles == {
        "email": "someone@example.com",
        "name": "",
        "global_roles": ["clio_general"],
        "datasets": {},
        "groups": ["lab"],
    }
    assert clio_user["email"] == "someone@example.com" and clio_user["groups"] == ["lab"]
    assert clio_user["org"] == "" and clio_user["missing_tos"] == []


def test_a_response_model_named_by_import_string_documents_the_route(api):
    """roles' models are named, not imported: its OpenAPI document still has them."""
    doc = api.client("roles").get("/roles/_openapi.json").get_json()
    answer = doc["paths"]["/roles"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/ProfilePublic"}
    assert "ClioUserPublic" in doc["components"]["schemas"]
