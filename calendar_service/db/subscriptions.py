"""Repository of Web Push subscriptions (the push consumer only reads this table)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping

from calendar_service.db.models import PushSubscription, table_of
from calendar_service.db.repositories import Repository

subscriptions = table_of(PushSubscription)


class Subscriptions(Repository):
    async def upsert(
        self, *, user_id: uuid.UUID, endpoint: str, p256dh: str, auth: str
    ) -> tuple[RowMapping, bool]:
        """The stored subscription, and whether it is new.

        An endpoint is stored once. Subscribing it again keeps its id and
        takes the new keys and owner: a browser profile's subscription
        belongs to whoever subscribed on it last.
        """
        statement = (
            insert(subscriptions)
            .values(id=uuid.uuid4(), user_id=user_id, endpoint=endpoint, p256dh=p256dh, auth=auth)
            .on_conflict_do_update(
                index_elements=["endpoint"],
                set_={"user_id": user_id, "p256dh": p256dh, "auth": auth},
            )
            .returning(
                subscriptions.c.id,
                subscriptions.c.endpoint,
                subscriptions.c.created_at,
                # PostgreSQL: xmax is 0 on a row this statement inserted, not on one it updated
                literal_column("xmax = 0").label("inserted"),
            )
        )
        row = await self._one(statement)
        assert row is not None
        return row, bool(row["inserted"])

    async def of_user(self, user_id: uuid.UUID) -> Sequence[RowMapping]:
        return await self._all(
            select(subscriptions.c.id, subscriptions.c.endpoint, subscriptions.c.created_at)
            .where(subscriptions.c.user_id == user_id)
            .order_by(subscriptions.c.created_at, subscriptions.c.id)
        )

    async def remove(self, subscription_id: uuid.UUID, *, user_id: uuid.UUID) -> bool:
        """Delete one of the user's subscriptions; False if the user has no such one."""
        statement = (
            delete(subscriptions)
            .where(subscriptions.c.id == subscription_id, subscriptions.c.user_id == user_id)
            .returning(subscriptions.c.id)
        )
        return await self._one(statement) is not None

    async def remove_expired(self, subscription_id: uuid.UUID, *, endpoint: str) -> bool:
        """Delete a subscription a push service called gone; False if it is gone already.

        The endpoint must still match, so a report cannot delete a row that
        was meanwhile subscribed again with other details.
        """
        statement = (
            delete(subscriptions)
            .where(subscriptions.c.id == subscription_id, subscriptions.c.endpoint == endpoint)
            .returning(subscriptions.c.id)
        )
        return await self._one(statement) is not None
