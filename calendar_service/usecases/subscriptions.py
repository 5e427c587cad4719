"""A user's Web Push subscriptions: store one (moving it to the caller), remove one."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import RowMapping

from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import NotFound, TooManySubscriptions
from calendar_service.usecases.accounts import account_of


async def subscribe(
    uow: UnitOfWork,
    *,
    caller_id: uuid.UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
    per_user_limit: int,
) -> tuple[RowMapping, bool]:
    """The stored subscription and whether it is new; a known endpoint now belongs to the caller.

    A caller holding ``per_user_limit`` subscriptions may re-post one of
    them (new keys) but add no other: every RSVP change pushes to each.
    Two subscribes at the same moment may each see room for one more; the
    limit bounds abuse, it is not an exact quota.
    """
    await account_of(uow, caller_id)
    held = await uow.subscriptions.of_user(caller_id)
    if len(held) >= per_user_limit and all(row["endpoint"] != endpoint for row in held):
        raise TooManySubscriptions(per_user_limit)
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
