"""The browsable documentation: Swagger UI over an OpenAPI document.

Its files come from a pinned package (flask-swagger-ui ships Swagger UI's own dist, 5.x, which
reads OpenAPI 3.1; swagger-ui-bundle's 4.x cannot) and are served by the function itself, so
the page needs nothing from a CDN. Every URL on the page is relative, so the same page works at
`/<function>/_docs` behind the API gateway or the local one, at a function's own URL, and as
the whole bundle's page at the local stack's root.
"""

from __future__ import annotations

import html
import json
import os

from werkzeug.wrappers import Response

from common import errors

# The files the page loads; nothing else in the package's folder is served.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{assets}swagger-ui.css">
  <link rel="stylesheet" href="{assets}index.css">
  <link rel="icon" type="image/png" href="{assets}favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}swagger-ui-bundle.js"></script>
  <script src="{assets}swagger-ui-standalone-preset.js"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle(Object.assign({config}, {{
        dom_id: "#swagger-ui",
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      }}));
    }};
  </script>
</body>
</html>
"""


def _dist() -> str:
    import flask_swagger_ui  # the pinned package whose folder holds Swagger UI's files

    return os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")


def page(title: str, trailing_slash: bool = False, *, spec: str = "_openapi.json") -> Response:
    """The page, for a request at `.../_docs` (assets under `_docs/`, the document beside it)
    or `.../_docs/` (one level deeper), or at a root whose `spec` and `_docs/` are beside it."""
    assets, spec_url = ("", "../" + spec) if trailing_slash else ("_docs/", spec)
    config = {
        "url": spec_url,
        "deepLinking": True,
        "persistAuthorization": True,  # the token survives a reload
        "displayRequestDuration": True,
        "validatorUrl": None,  # Swagger UI would send the document to a validator online
    }
    body = _PAGE.format(title=html.escape(title), assets=assets, config=json.dumps(config))
    return Response(
        body,
        mimetype="text/html",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def asset(name: str) -> Response:
    """One of the page's files, cached for a day (they change only with the pinned package)."""
    if name not in ASSETS:
        raise errors.NotFound(f"no documentation file {name!r}")
    with open(os.path.join(_dist(), name), "rb") as f:
        data = f.read()
    return Response(
        data,
        content_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
