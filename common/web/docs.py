"""The browsable documentation: Swagger UI over an OpenAPI document.

Its files come from a pinned package (flask-swagger-ui ships Swagger UI's own dist, 5.x, which
reads OpenAPI 3.1; swagger-ui-bundle's 4.x cannot) and are served by the function itself, so
the page needs nothing from a CDN. Every URL on the page is relative, so the same page works at
`/<function>/_docs` behind the API gateway or the local one, at a function's own URL, and as
the whole bundle's page at the local stack's root.

The page runs no inline script: its Content-Security-Policy lets it run only script files from
its own origin (Swagger UI's and `gatehouse-docs.js`, which starts Swagger UI with the settings
the page carries as a JSON data block) and refuses to be framed. The token given to *Authorize*
is kept in the tab's sessionStorage, never localStorage (Swagger UI's own
`persistAuthorization` would write it there, where it outlives the tab).
"""

from __future__ import annotations

import html
import json
import os

import flask_swagger_ui  # the pinned package whose folder holds Swagger UI's files
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
# Our own script: starts Swagger UI with the page's settings (the JSON block
# #swagger-config), and keeps what Authorize holds in sessionStorage: restored when the page
# loads, saved at each authorize and logout (Swagger UI's persistAuthorizationIfNeeded action).
INIT_SCRIPT = """"use strict";
(function () {
  var KEY = "gatehouse.authorized";

  function saveForThisTab(system) {
    sessionStorage.setItem(KEY, JSON.stringify(system.authSelectors.authorized().toJS()));
  }

  var SessionAuthorization = {
    statePlugins: {
      auth: {
        wrapActions: {
          persistAuthorizationIfNeeded: function (original, system) {
            return function () { saveForThisTab(system); };
          }
        }
      },
      configs: {
        wrapActions: {
          loaded: function (original, system) {
            return function () {
              original.apply(null, arguments);
              var saved = sessionStorage.getItem(KEY);
              if (saved) { system.authActions.restoreAuthorization({ authorized: JSON.parse(saved) }); }
            };
          }
        }
      }
    }
  };

  window.addEventListener("load", function () {
    var config = JSON.parse(document.getElementById("swagger-config").textContent);
    window.ui = SwaggerUIBundle(Object.assign(config, {
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      plugins: [function () { return SessionAuthorization; }],
      layout: "StandaloneLayout"
    }));
  });
})();
"""
# Our files, served beside Swagger UI's.
OWN_ASSETS = {"gatehouse-docs.js": INIT_SCRIPT.encode()}
# Scripts and styles from this origin only, no inline script; requests (the document, "Try it
# out") to this origin; images from it and data: URLs (Swagger UI's icons); never framed. The
# one inline style allowed, by its hash, is the <style> inside Swagger UI 5.34's logo (SVG);
# tests/system/test_docs_browser.py fails on any style or script the policy blocks.
SWAGGER_LOGO_STYLE = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        f"style-src 'self' {SWAGGER_LOGO_STYLE}",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
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
  <script id="swagger-config" type="application/json">{config}</script>
  <script src="{assets}swagger-ui-bundle.js"></script>
  <script src="{assets}swagger-ui-standalone-preset.js"></script>
  <script src="{assets}gatehouse-docs.js"></script>
</body>
</html>
"""
_JS = "text/javascript; charset=utf-8"


def _dist() -> str:
    return os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")


def page(title: str, trailing_slash: bool = False, *, spec: str = "_openapi.json") -> Response:
    """The page, for a request at `.../_docs` (assets under `_docs/`, the document beside it)
    or `.../_docs/` (one level deeper), or at a root whose `spec` and `_docs/` are beside it."""
    assets, spec_url = ("", "../" + spec) if trailing_slash else ("_docs/", spec)
    config = {
        "url": spec_url,
        "deepLinking": True,
        # Not Swagger UI's own (localStorage, which outlives the tab): gatehouse-docs.js keeps
        # the token in sessionStorage, so it survives a reload but not the tab.
        "persistAuthorization": False,
        "displayRequestDuration": True,
        "validatorUrl": None,  # Swagger UI would send the document to a validator online
    }
    # A data block, not a script: "<" escaped so no value can close it.
    data = json.dumps(config).replace("<", "\\u003c")
    body = _PAGE.format(title=html.escape(title), assets=assets, config=data)
    return Response(
        body,
        mimetype="text/html",
        headers={
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Frame-Options": "DENY",
        },
    )


def asset(name: str) -> Response:
    """One of the page's files: Swagger UI's cached for a day (they change only with the pinned
    package), ours revalidated (it changes with Gatehouse)."""
    if name in OWN_ASSETS:
        data, content_type, cache = OWN_ASSETS[name], _JS, "no-cache"
    elif name in ASSETS:
        with open(os.path.join(_dist(), name), "rb") as f:
            data = f.read()
        content_type, cache = ASSETS[name], "public, max-age=86400"
    else:
        raise errors.NotFound(f"no documentation file {name!r}")
    return Response(
        data,
        content_type=content_type,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
