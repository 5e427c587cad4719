"""``/admin``: the operators' dead-letter page, server-rendered, no build step.

The page itself is public HTML with no data in it; it signs in against
``/auth/token`` and calls the admin API with the bearer token (kept in
``sessionStorage``), so the API's admin check is the only gate.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

UI = Path(__file__).resolve().parents[1] / "admin_ui"
templates = Jinja2Templates(directory=UI / "templates")

router = APIRouter(tags=["admin"])

#: The page runs only its own script and stylesheet, talks only to this API,
#: and is never framed: a script injected through a dead letter's body (shown
#: on the page) could neither run inline nor send what it reads elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
async def admin_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "admin.html", headers=SECURITY_HEADERS)


def mount_static(app: FastAPI) -> None:
    app.mount("/admin/static", StaticFiles(directory=UI / "static"), name="admin-static")
