"""Serves `/console/` and its assets (a fixed set, read from the package once), and sends `/` there.

Assets are looked up by name in the set found under `static/`, never by joining a request path onto a
folder, so no path can reach outside it. Every console answer carries a Content-Security-Policy that
allows scripts, styles and connections only from this origin (no inline script, no `eval`) and forbids
framing, plus `nosniff`: a value that slipped into the page as markup still could not run.
"""

import functools
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response

from schemas.messages import CONSOLE_LABELS

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def assets() -> dict[str, tuple[bytes, str]]:
    """Relative path → (content, media type) of every servable file under `static/`."""
    return {
        path.relative_to(STATIC).as_posix(): (path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(STATIC.rglob("*"))
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def _asset(name: str) -> Response:
    found = assets().get(name)
    if found is None:
        raise HTTPException(status_code=404)
    content, media_type = found
    return Response(content, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console")
async def console_without_slash() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/")
async def console_index() -> Response:
    return _asset("index.html")


@router.get("/console/labels.json")
async def console_labels() -> JSONResponse:
    """The console's labels in both languages, from the message catalog (schemas/messages.py)."""
    languages = {"zh": {key: zh for key, (zh, _) in CONSOLE_LABELS.items()},
                 "en": {key: en for key, (_, en) in CONSOLE_LABELS.items()}}
    return JSONResponse(languages, headers=SECURITY_HEADERS)


@router.get("/console/{name:path}")
async def console_asset(name: str) -> Response:
    return _asset(name)
