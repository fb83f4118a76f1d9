"""The local gateway: every function in functions/ mounted at /<name> on one port.

In the cloud the API gateway maps /<function>/** to each function; this does the same locally
with werkzeug's DispatcherMiddleware over functions-framework apps.
`python -m tools.gateway --port 8080` serves it (the emulator environment must be set).
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


def build():
    from functions_framework import create_app

    mounts = {
        f"/{name}": _root_path(create_app("handle", os.path.join(FUNCTIONS_DIR, name, "main.py")))
        for name in function_names()
    }
    return DispatcherMiddleware(_no_function, mounts)


def serve(app, port: int, host: str = "127.0.0.1") -> None:
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    serve(build(), args.port)
