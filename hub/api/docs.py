"""/docs and /redoc served from the hub's own files: no CDN, a strict Content-Security-Policy.

FastAPI's pages load Swagger UI and ReDoc from a public CDN and start them with an inline
script: they break on an offline install and under a policy that allows only the hub's own
scripts. The files come from the `fastapi-offline` package (a maintained copy of
swagger-ui-dist and redoc); the start-up script is a static file of ours.
"""

from __future__ import annotations

import html
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
_ASSET_DIR = str(files("fastapi_offline") / "static")

# The console's policy (hub/console/render.py): only the hub's own scripts and styles;
# Swagger UI shows its icons as data: URLs. Nothing may frame the page.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_SWAGGER_START = """\
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""

_SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} - API</title>
<link rel="icon" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body data-openapi="{openapi}">
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body></html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} - API reference</title>
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc.standalone.js"></script>
</body></html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve /docs (Swagger UI) and /redoc for APP, built with docs_url=redoc_url=None."""
    title = html.escape(app.title)
    openapi = html.escape(app.openapi_url or "/openapi.json")
    app.mount(ASSETS, StaticFiles(directory=_ASSET_DIR), name="docs-assets")

    @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = _SWAGGER_PAGE.format(title=title, assets=ASSETS, openapi=openapi)
        return HTMLResponse(page, headers=_HEADERS)

    @app.api_route("/docs/start.js", methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger_start() -> Response:
        return Response(
            _SWAGGER_START,
            media_type="text/javascript",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    @app.api_route("/redoc", methods=["GET", "HEAD"], include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = _REDOC_PAGE.format(title=title, assets=ASSETS, openapi=openapi)
        return HTMLResponse(page, headers=_HEADERS)
