"""The calendar's use cases: what a request asks for, decided and committed in one place.

Each use case is a plain async function of an open ``UnitOfWork``, the
adapters it needs (cache, quota) and plain inputs. It checks who may do it,
writes, adds its messages to the outbox, commits, and invalidates the cache;
it refuses with an error from ``calendar_service.errors``, which the API maps
to a status. Routes parse, call one use case and show its result.

Where do an event's counters move? Not here: writing an RSVP row is enough.
The deferred trigger ``move_event_counters`` (migration 0002) applies the
change to the event row inside COMMIT, so that row is locked only while the
server commits, never while a request waits on the event loop; a commit that
would overbook fails on ``ck_events_within_capacity`` and
``UnitOfWork.commit()`` raises ``EventFull``.
"""
