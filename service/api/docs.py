"""`/redoc` from local files. Swagger UI (`/docs`) and ReDoc's script come from the fastapi-offline package,
served under `DOCS_ASSETS`; ReDoc's script is served here, with the one resource it fetches at run time
(its "powered by" logo, from a CDN) pointed at a local image, so the page loads nothing from elsewhere.
"""

import functools
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

DOCS_ASSETS = "/docs/assets"
"""Where Swagger UI's files are served: under `/docs`, which is open like the page itself."""
REDOC_SCRIPT = "/docs/redoc.standalone.js"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
FAVICON = f"{DOCS_ASSETS}/favicon.png"

router = APIRouter(include_in_schema=False)


@functools.cache
def redoc_script() -> bytes:
    script = (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js").read_text(encoding="utf-8")
    return script.replace(REDOC_LOGO, FAVICON).encode()


@router.get(REDOC_SCRIPT)
async def redoc_js() -> Response:
    return Response(redoc_script(), media_type="text/javascript; charset=utf-8")


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title="batchsync - ReDoc", redoc_js_url=REDOC_SCRIPT,
                          redoc_favicon_url=FAVICON, with_google_fonts=False)
