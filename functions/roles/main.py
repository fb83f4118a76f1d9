"""roles: what the caller may do (SPEC §3 roles). Other applications authorize with it.

Its answers are built here from the caller's record with exactly their models' fields, so they
are sent as they are: the response models (named, imported on first use) document them, and the
function's first request loads no pydantic (cold start; tests/unit/test_cold_start.py).
"""

from common.identity import auth, authz
from common.web import clio
from common.web.http import App, json_response

app = App("roles", "The caller's global and per-dataset roles.", authenticate=auth.authenticate)


@app.get("/roles", check=authz.AUTHENTICATED, response="common.models:ProfilePublic")
def get_roles(req):
    """The caller's roles: global, per dataset (public grants not listed) and groups."""
    return json_response(req.caller.profile())


@app.get("/v2/roles", check=authz.AUTHENTICATED, response="common.models:ClioUserPublic")
def clio_roles(req):
    """The caller's roles as clio's `User` (clio's clients read `global_roles`, `datasets`, `groups`)."""
    return json_response(clio.user(req.caller.email, req.caller.profile()))


def handle(request):
    return app(request)
