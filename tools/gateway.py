"""The local gateway: every function in functions/ mounted at /<name> on one port, and clio's
/v2/<resource> at the function that serves it (common.web.clio.RESOURCES).

In the cloud the API gateway maps /<function>/** (and /v2/<resource>/**) to each function; this
does the same locally
with werkzeug's DispatcherMiddleware over functions-framework apps. Its root is the documentation
of the whole bundle: Swagger UI at /, the combined OpenAPI document at /_openapi.json.
`python -m tools.gateway --port 8080` serves it (the emulator environment must be set);
`python -m tools.gateway --openapi FILE` writes the combined document (`make package` does).
"""

from __future__ import annotations

import argparse
import json
import os

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCTIONS_DIR = os.path.join(ROOT, "functions")


def function_names() -> list[str]:
    return sorted(
        n for n in os.listdir(FUNCTIONS_DIR) if os.path.isfile(os.path.join(FUNCTIONS_DIR, n, "main.py"))
    )


def _no_function(environ, start_response):
    body = {
        "error": "not_found",
        "message": "no function at this path; try /<function>/_health",
        "request_id": "gateway",
        "details": {"functions": function_names()},
    }
    return Response(json.dumps(body), status=404, mimetype="application/json")(environ, start_response)


def _root_path(app):
    """/<name> itself reaches the function as "/" (functions-framework would redirect "")."""

    def wsgi(environ, start_response):
        environ["PATH_INFO"] = environ.get("PATH_INFO") or "/"
        return app(environ, start_response)

    return wsgi


def bundle_document(mounts: dict[str, object], server: str = "/") -> dict:
    """The whole bundle's OpenAPI document, from each mounted function's own."""
    from werkzeug.test import Client

    from common.config import settings
    from common.web import openapi

    documents = [Client(mounts[f"/{name}"]).get("/_openapi.json").get_json() for name in function_names()]
    return openapi.combine(documents, version=settings().version, server=server)


def _bundle_docs(mounts: dict[str, object]):
    """The local stack's root: one Swagger UI page for every function (GET /), the combined
    document it reads (GET /_openapi.json) and the page's files (GET /_docs/<file>); anything
    else that no function owns is the 404 envelope."""
    from functools import cache

    from common import errors
    from common.web import docs

    combined = cache(lambda: json.dumps(bundle_document(mounts)))  # the routes do not change

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return _no_function(environ, start_response)
        if path == "/":
            response = docs.page("Gatehouse")
        elif path == "/_openapi.json":
            response = Response(combined(), mimetype="application/json")
        elif path.startswith("/_docs/"):
            try:
                response = docs.asset(path.removeprefix("/_docs/"))
            except errors.NotFound:
                return _no_function(environ, start_response)
        else:
            return _no_function(environ, start_response)
        return response(environ, start_response)

    return wsgi


def mounts() -> dict[str, object]:
    """/<function> for each function, and clio's /v2/<resource> for each resource a function
    serves (the same app: it routes on the full path, common.web.clio)."""
    from functions_framework import create_app

    from common.web import clio

    apps = {
        f"/{name}": _root_path(create_app("handle", os.path.join(FUNCTIONS_DIR, name, "main.py")))
        for name in function_names()
    }
    for resource, function in clio.RESOURCES.items():
        if f"/{function}" in apps:
            apps[f"{clio.ROOT}/{resource}"] = apps[f"/{function}"]
    return apps


def build():
    mounted = mounts()
    return DispatcherMiddleware(_bundle_docs(mounted), mounted)


def serve(app, port: int, host: str = "127.0.0.1") -> None:
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--openapi", metavar="FILE", help="write the combined OpenAPI document and exit")
    parser.add_argument("--server", default="/", help="the servers URL of that document")
    args = parser.parse_args()
    if args.openapi:
        with open(args.openapi, "w") as f:
            json.dump(bundle_document(mounts(), args.server), f, indent=1)
            f.write("\n")
    else:
        serve(build(), args.port)
