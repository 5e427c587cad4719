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


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
async def admin_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "admin.html")


def mount_static(app: FastAPI) -> None:
    app.mount("/admin/static", StaticFiles(directory=UI / "static"), name="admin-static")
