"""A user's Web Push subscriptions: store one (moving it to the caller), remove one."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import RowMapping

from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import NotFound
from calendar_service.usecases.accounts import account_of


async def subscribe(
    uow: UnitOfWork, *, caller_id: uuid.UUID, endpoint: str, p256dh: str, auth: str
) -> tuple[RowMapping, bool]:
    """The stored subscription and whether it is new; a known endpoint now belongs to the caller."""
    await account_of(uow, caller_id)
    row, created = await uow.subscriptions.upsert(
        user_id=caller_id, endpoint=endpoint, p256dh=p256dh, auth=auth
    )
    await uow.commit()
    return row, created


async def unsubscribe(uow: UnitOfWork, *, caller_id: uuid.UUID, subscription_id: uuid.UUID) -> None:
    """Remove one of the caller's subscriptions; someone else's is as missing as a missing one."""
    if not await uow.subscriptions.remove(subscription_id, user_id=caller_id):
        raise NotFound("push subscription")
    await uow.commit()
