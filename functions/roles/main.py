"""roles: what the caller may do (SPEC §3 roles). Other applications authorize with it."""

from common.identity import auth, authz
from common.models import ProfilePublic
from common.web import clio
from common.web.http import App

app = App("roles", "The caller's global and per-dataset roles.", authenticate=auth.authenticate)


@app.get("/roles", check=authz.AUTHENTICATED, response=ProfilePublic)
def get_roles(req):
    """The caller's roles: global, per dataset (public grants not listed) and groups."""
    return req.caller.profile()


@app.get("/v2/roles", check=authz.AUTHENTICATED, response=clio.ClioUserPublic)
def clio_roles(req):
    """The caller's roles as clio's `User` (clio's clients read `global_roles`, `datasets`, `groups`)."""
    return clio.user(req.caller.email, req.caller.profile())


def handle(request):
    return app(request)
