"""rsvp counters at commit

The event's counters (going_seats, going_count, maybe_count, declined_count)
move in a deferred constraint trigger on rsvps instead of an UPDATE the API
sends. Deferred, it runs inside COMMIT: the event row is locked only while
the server commits, never across a round trip to the app, so the RSVPs of a
popular event no longer queue behind each other's event-loop delays.
Capacity is still enforced by ck_events_within_capacity, which now fails the
COMMIT (the API maps that to 409).

Deploy it with the code that stops updating the counters itself: old code
and this trigger together would count every change twice.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 11:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Takes back what the old row counted and adds what the new row counts.
#: A `going` RSVP holds 1 + guests seats; `cancelled` counts nothing. An
#: RSVP never moves to another event, so one event id serves both rows.
MOVE_EVENT_COUNTERS_FUNCTION = """
CREATE FUNCTION move_event_counters() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target_event uuid;
    d_seats integer := 0;
    d_going integer := 0;
    d_maybe integer := 0;
    d_declined integer := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        target_event := OLD.event_id;
        d_seats := d_seats - CASE WHEN OLD.status = 'going' THEN 1 + OLD.guests ELSE 0 END;
        d_going := d_going - (OLD.status = 'going')::integer;
        d_maybe := d_maybe - (OLD.status = 'maybe')::integer;
        d_declined := d_declined - (OLD.status = 'declined')::integer;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        target_event := NEW.event_id;
        d_seats := d_seats + CASE WHEN NEW.status = 'going' THEN 1 + NEW.guests ELSE 0 END;
        d_going := d_going + (NEW.status = 'going')::integer;
        d_maybe := d_maybe + (NEW.status = 'maybe')::integer;
        d_declined := d_declined + (NEW.status = 'declined')::integer;
    END IF;
    -- e.g. a `maybe` changing its guests: nothing moves, so lock nothing
    IF d_seats = 0 AND d_going = 0 AND d_maybe = 0 AND d_declined = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE events
    SET going_seats = going_seats + d_seats,
        going_count = going_count + d_going,
        maybe_count = maybe_count + d_maybe,
        declined_count = declined_count + d_declined
    WHERE id = target_event;
    RETURN NULL;
END $$
"""

#: A constraint trigger with WHEN cannot name OLD on INSERT, hence two triggers.
#: DELETE is covered too, so that no future way of removing RSVPs skews the counts.
COUNT_NEW_OR_REMOVED_RSVP_TRIGGER = """
CREATE CONSTRAINT TRIGGER event_counters_on_rsvp_insert_or_delete
AFTER INSERT OR DELETE ON rsvps
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION move_event_counters()
"""
COUNT_CHANGED_RSVP_TRIGGER = """
CREATE CONSTRAINT TRIGGER event_counters_on_rsvp_change
AFTER UPDATE OF status, guests ON rsvps
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.guests IS DISTINCT FROM NEW.guests)
EXECUTE FUNCTION move_event_counters()
"""


def upgrade() -> None:
    op.execute(MOVE_EVENT_COUNTERS_FUNCTION)
    op.execute(COUNT_NEW_OR_REMOVED_RSVP_TRIGGER)
    op.execute(COUNT_CHANGED_RSVP_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS event_counters_on_rsvp_change ON rsvps")
    op.execute("DROP TRIGGER IF EXISTS event_counters_on_rsvp_insert_or_delete ON rsvps")
    op.execute("DROP FUNCTION IF EXISTS move_event_counters()")
