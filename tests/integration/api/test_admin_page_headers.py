"""The operators' page runs only its own code and cannot be framed (issue 14, item 5)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_the_admin_page_forbids_inline_scripts_foreign_hosts_and_framing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/admin")

    assert response.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_admin_page_has_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    html = (await client.get("/admin")).text

    assert "<script>" not in html
    assert "<style" not in html
    assert "style=" not in html
    assert "/admin/static/admin.js" in html
