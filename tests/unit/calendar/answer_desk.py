"""An answer desk in memory: ``answer_rsvp`` specified without PostgreSQL.

The real desk runs the rules in one SQL function (migration 0007); this one
runs the same rules as ``stage_answer`` states them on a ``FakeUnitOfWork``,
so the use case's outcomes (reply, replay, refusal, cache invalidation) read
as specifications. That the SQL keeps to them is proven in tests/integration/api/.
"""

from __future__ import annotations

from collections.abc import Callable

from calendar_service.db.answers import AnswerRequest, StoredAnswer
from calendar_service.domain import Answer, StoredStatus
from calendar_service.usecases.rsvps import Answered, stage_answer
from tests.fakes.calendar import FakeUnitOfWork

Render = Callable[[Answered], tuple[int, bytes]]


class UnitOfWorkAnswerDesk:
    def __init__(self, uow: FakeUnitOfWork, render: Render) -> None:
        self.uow = uow
        self.render = render

    async def answer(self, request: AnswerRequest) -> StoredAnswer:
        user_id, event_id, key = request.user_id, request.event_id, request.key
        fingerprint = request.fingerprint
        uow = self.uow
        user = await uow.users.by_id(user_id)
        if user is None:
            return StoredAnswer("no_account", 0, None, changed=False)
        if key is not None and fingerprint is not None:
            earlier = await uow.idempotency.claim(user_id, key, fingerprint)
            if earlier is not None and earlier["request_fingerprint"] != fingerprint:
                return StoredAnswer("key_reused", 0, None, changed=False)
            if earlier is not None:
                code, body = earlier["status_code"], earlier["response_body"]
                return StoredAnswer("replayed", code, body, changed=False)
        if await uow.events.with_organizer(event_id) is None:
            return StoredAnswer("no_event", 0, None, changed=False)
        answer = Answer(_stored(request.status), request.guests)
        answered = await stage_answer(
            uow,  # type: ignore[arg-type]
            event_id=event_id,
            user=user,
            answer=answer,
            correlation_id=request.correlation_id,
        )
        code, body = self.render(answered)
        if key is not None:
            await uow.idempotency.store_response(user_id, key, code, body)
        await uow.commit()
        return StoredAnswer("stored", code, body, changed=answered.changed)


def _stored(status: str) -> StoredStatus:
    assert status in ("going", "maybe", "declined", "cancelled")
    return status  # type: ignore[return-value]
