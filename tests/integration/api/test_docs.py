"""The interactive docs (/docs, /redoc) load every asset from the service itself.

Swagger UI and ReDoc come from a CDN by default, which leaves the pages blank
offline; the service serves them from a package instead.
"""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest

pytestmark = pytest.mark.integration


class _AssetLinks(HTMLParser):
    """Collects what a page makes the browser fetch: src, href and ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "spec-url"} and value:
                self.links.append(value)


def asset_links(page: str) -> list[str]:
    parser = _AssetLinks()
    parser.feed(page)
    return parser.links


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_page_references_only_assets_the_service_serves(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)

    assert response.status_code == 200, response.text
    links = asset_links(response.text)
    assert any(link.endswith(".js") for link in links), links
    assert "http://" not in response.text
    assert "https://" not in response.text
    for link in links:
        assert link.startswith("/"), link
        assert not link.startswith("//"), link
        asset = await client.get(link)
        assert asset.status_code == 200, (link, asset.status_code)
        assert asset.content, link


async def test_swagger_ui_reads_the_services_own_openapi_document(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/docs")).text

    assert "url: '/openapi.json'" in page
    assert (await client.get("/openapi.json")).status_code == 200
