"""The interactive docs (/docs, /redoc) load every asset from the service itself,
and the OpenAPI document they show says what the service answers.

Swagger UI and ReDoc come from a CDN by default, which leaves the pages blank
offline; the service serves them from a package instead. The document is
fuzzed against the service in ``test_openapi_conformance.py``; the tests here
state its shape.
"""

from __future__ import annotations

import uuid
from html.parser import HTMLParser

import httpx
import pytest

from calendar_service.api.middleware import PROBE_PATHS

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


async def test_every_refusal_in_the_document_has_the_one_error_model(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    refusals = {
        (method, path, code): answer
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for code, answer in operation["responses"].items()
        if code.startswith(("4", "5")) and path != "/readyz"
    }
    assert len(refusals) > 100
    for where, answer in refusals.items():
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, where
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_a_route_that_reads_a_token_declares_401_and_429(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "security" in operation:
                assert {"401", "429"} <= set(operation["responses"]), (method, path)


async def test_every_route_but_the_probes_declares_the_503_of_the_admission_limit(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            busy = operation["responses"].get("503", {}).get("description", "")
            declared = "MAX_REQUESTS_IN_FLIGHT" in busy
            assert declared is (path not in PROBE_PATHS), (method, path)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", f"/events/{uuid.uuid4()}", "GET, PATCH"),
        ("PUT", "/users/me/push-subscriptions", "GET, POST"),
        ("DELETE", "/admin/dead-letters/groups", "GET"),
        ("PUT", "/admin/dead-letters/7", "DELETE, GET"),
    ],
)
async def test_an_unsupported_method_is_a_405_naming_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json() == {"detail": "Method Not Allowed"}
