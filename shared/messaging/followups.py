"""Deterministic identities for follow-up messages.

A consumer that crashes after publishing a follow-up but before acking its
source handles the source again (or finds it in its inbox) and publishes the
follow-up again. Deriving the follow-up's ``message_id`` from the source
makes that second copy recognisable downstream, where the inbox of the
receiving consumer drops it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid5

from shared.schemas import Envelope

#: Namespace of every follow-up id; changing it would break deduplication.
FOLLOWUP_NAMESPACE = UUID("6b0f5a4e-3c1d-5e8a-9f2b-7d4c1a0e9b35")


def followup_message_id(consumer: str, source_id: UUID, followup_type: str, index: int) -> UUID:
    """The id of the ``index``-th follow-up of ``followup_type`` that ``consumer`` sent
    for message ``source_id``."""
    return uuid5(FOLLOWUP_NAMESPACE, f"{consumer}\x1f{source_id}\x1f{followup_type}\x1f{index}")


def with_followup_ids(
    consumer: str, source_id: UUID, followups: Iterable[Envelope[Any]]
) -> list[Envelope[Any]]:
    """``followups`` with their deterministic ids.

    The index counts follow-ups of the same type only, so adding a follow-up
    of another type to a handler does not change the ids of the existing ones.
    """
    seen: Counter[str] = Counter()
    stamped: list[Envelope[Any]] = []
    for followup in followups:
        index = seen[followup.type]
        seen[followup.type] += 1
        message_id = followup_message_id(consumer, source_id, followup.type, index)
        stamped.append(followup.model_copy(update={"message_id": message_id}))
    return stamped
