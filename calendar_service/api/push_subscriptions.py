"""A user's Web Push subscriptions: what a browser's ``PushManager.subscribe()`` returned.

An endpoint is one browser profile's mailbox at its push service, so it is
stored once. Posting it again answers 200 with the stored row (updated with
the keys just sent); if another account had it, it moves to the caller:
whoever subscribed on that browser last is the one signed in there now.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, Field

from calendar_service.api.deps import ContainerDep, CurrentUser, UowDep
from calendar_service.api.errors import refusals
from calendar_service.errors import NotFound, Overloaded, TooManySubscriptions
from calendar_service.usecases.subscriptions import subscribe as store_subscription
from calendar_service.usecases.subscriptions import unsubscribe as remove_subscription
from shared.outbound_addresses import ForbiddenAddress, public_addresses

router = APIRouter(
    prefix="/users/me/push-subscriptions", tags=["push"], responses=refusals(Overloaded)
)

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


def _base64url_of_length(length: int) -> AfterValidator:
    """A base64url string (padding optional) that decodes to exactly ``length`` bytes."""

    def check(value: str) -> str:
        if not _BASE64URL.match(value):
            raise ValueError("must be base64url (A-Z a-z 0-9 - _)")
        unpadded = value.rstrip("=")
        try:
            raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ValueError("must be base64url") from exc
        if len(raw) != length:
            raise ValueError(f"must decode to {length} bytes, not {len(raw)}")
        if length == 65 and raw[0] != 0x04:
            raise ValueError("must be an uncompressed P-256 point (first byte 0x04)")
        return unpadded

    return AfterValidator(check)


def _push_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute https URL")
    if any(c.isspace() or ord(c) < 0x20 for c in value) or parts.username or parts.password:
        raise ValueError("must be a plain URL without spaces or credentials")
    return value


# What the validators accept, as patterns for the OpenAPI document: a point
# (0x04, then 64 bytes) is 87 base64url characters, "B" then one of A-P first;
# a 16-byte secret is 22; an endpoint is https to a host, no credentials, no
# spaces or control characters. (Outside prod, http to loopback is accepted too.)
P256DH_PATTERN = r"^B[A-P][A-Za-z0-9_-]{85}={0,2}$"
AUTH_PATTERN = r"^[A-Za-z0-9_-]{22}={0,2}$"
ENDPOINT_PATTERN = r"^https://[^\s\x00-\x1f/?#@\[\]:]+(:[0-9]{1,5})?([/?#][^\s\x00-\x1f]*)?$"


class SubscriptionKeys(BaseModel):
    p256dh: Annotated[str, Field(max_length=100), _base64url_of_length(65)] = Field(
        description="The browser's P-256 public key (uncompressed point, base64url).",
        json_schema_extra={"pattern": P256DH_PATTERN},
    )
    auth: Annotated[str, Field(max_length=40), _base64url_of_length(16)] = Field(
        description="The 16-byte authentication secret (base64url).",
        json_schema_extra={"pattern": AUTH_PATTERN},
    )


class SubscriptionIn(BaseModel):
    endpoint: Annotated[str, Field(max_length=2048), AfterValidator(_push_url)] = Field(
        description="The push service URL the browser gave (https).",
        json_schema_extra={"pattern": ENDPOINT_PATTERN},
    )
    keys: SubscriptionKeys


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    endpoint: str
    created_at: datetime


#: Longest a subscribe waits for the endpoint's name to resolve before letting it through.
RESOLVE_TIMEOUT_S = 2.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_endpoint(message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", "endpoint"), "msg": f"Value error, {message}", "type": "value_error"}]
    )


def check_endpoint_scheme(endpoint: str, *, allow_loopback_http: bool) -> None:
    """Push services are https; plain http is let through only to this machine, outside prod."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https":
        return
    if allow_loopback_http and _is_loopback(parts.hostname or ""):
        return
    allowed = " (or http on loopback in dev/test)" if allow_loopback_http else ""
    raise _refuse_endpoint(f"must be an https URL{allowed}")


async def check_endpoint_address(endpoint: str) -> None:
    """In prod a push endpoint must be a public address (:mod:`shared.outbound_addresses`).

    A 422 here tells an honest client at once; the push consumer checks
    again after its own resolution, which is what stops a name that
    resolves differently later. So a name that does not resolve now, or not
    within ``RESOLVE_TIMEOUT_S``, is let through to that second check.
    """
    parts = urlsplit(endpoint)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            await public_addresses(parts.hostname or "", parts.port or 443)
    except ForbiddenAddress as exc:
        raise _refuse_endpoint(f"must be a public push service address: {exc}") from exc
    except (OSError, TimeoutError):
        return


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": SubscriptionOut,
            "description": "This endpoint was registered already (now the caller's)",
        },
        **refusals(TooManySubscriptions),
    },
)
async def subscribe(
    body: SubscriptionIn,
    caller: CurrentUser,
    uow: UowDep,
    container: ContainerDep,
    response: Response,
) -> SubscriptionOut:
    """Store a subscription: 201 when new, 200 when the endpoint was known already.

    In prod the endpoint must be https to a public address (422 otherwise).
    """
    settings = container.settings
    check_endpoint_scheme(body.endpoint, allow_loopback_http=settings.app_env != "prod")
    if settings.app_env == "prod":  # dev's push service is on 127.0.0.1
        await check_endpoint_address(body.endpoint)
    row, created = await store_subscription(
        uow,
        caller_id=caller.user_id,
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        per_user_limit=settings.push_subscriptions_per_user,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return SubscriptionOut.model_validate(dict(row))


@router.get("")
async def list_subscriptions(caller: CurrentUser, uow: UowDep) -> list[SubscriptionOut]:
    """The caller's subscriptions, oldest first."""
    rows = await uow.subscriptions.of_user(caller.user_id)
    return [SubscriptionOut.model_validate(dict(row)) for row in rows]


@router.delete(
    "/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT, responses=refusals(NotFound)
)
async def unsubscribe(
    subscription_id: Annotated[uuid.UUID, Path()], caller: CurrentUser, uow: UowDep
) -> Response:
    """Remove one of the caller's subscriptions; someone else's is a 404, as a missing one."""
    await remove_subscription(uow, caller_id=caller.user_id, subscription_id=subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
