"""answer rsvp function

``answer_rsvp`` does everything ``POST /events/{id}/rsvps`` writes in one
round trip and one statement, so one implicit transaction: check the account,
claim the Idempotency-Key (or find the first reply to it), read the event,
insert or change the RSVP (version + 1), set its notifications back to
pending, add its ``rsvp.created|updated`` envelope to the outbox and store the
reply with the key. The API used to spend nine round trips and ~6 ms of CPU on
this; the capacity check still runs at COMMIT (the deferred counter trigger of
0002), which now is the end of this one statement.

The envelope and the reply are rendered here as JSON with the fields, order
and UTC timestamps pydantic writes (``iso_utc``); the tests parse both with
the pydantic models. What the rules decide but SQL should not know (the
producer's name, the channels, the outbox route) comes in as parameters.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: A timestamp as pydantic writes an aware datetime: UTC, ``Z``, microseconds only if any.
ISO_UTC_FUNCTION = """
CREATE OR REPLACE FUNCTION iso_utc(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_part('microseconds', ts)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(ts AT TIME ZONE 'UTC', '.US') END
        || 'Z'
$$
"""

# Written out, not imported: a migration keeps the SQL of its day.
# outcome: 'stored' (answered now), 'replayed' (the key's first reply),
# 'key_reused' (the key with another request), 'no_account', 'no_event'.
ANSWER_FUNCTION = """
CREATE OR REPLACE FUNCTION answer_rsvp(
    p_user_id uuid, p_event_id uuid, p_status text, p_guests integer,
    p_key text, p_fingerprint text, p_correlation_id uuid,
    p_producer text, p_channels text[], p_exchange text, p_routing_key text
) RETURNS TABLE (outcome text, status_code integer, body bytea, changed boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_user users%ROWTYPE;
    v_event record;
    v_key idempotency_keys%ROWTYPE;
    v_rsvp rsvps%ROWTYPE;
    v_before rsvps%ROWTYPE;
    v_claimed boolean := false;
    v_created boolean;
    v_type text;
    v_message_id uuid := gen_random_uuid();
    v_notifications json;
    v_reply text;
BEGIN
    changed := true;
    SELECT * INTO v_user FROM users WHERE id = p_user_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_account', 0, NULL::bytea, false;
        RETURN;
    END IF;

    SELECT e.*, o.name AS organizer_name, o.email AS organizer_email INTO v_event
    FROM events e JOIN users o ON o.id = e.organizer_id WHERE e.id = p_event_id;

    IF p_key IS NOT NULL THEN
        IF v_event.id IS NOT NULL THEN
            -- a concurrent request with the same key waits here until it commits
            INSERT INTO idempotency_keys
                (user_id, key, request_fingerprint, status_code, response_body)
            VALUES (p_user_id, p_key, p_fingerprint, 0, '')
            ON CONFLICT (user_id, key) DO NOTHING;
            v_claimed := FOUND;
        END IF;
        IF NOT v_claimed THEN
            -- a new statement, so a new snapshot: it sees the first request's commit
            SELECT * INTO v_key FROM idempotency_keys WHERE user_id = p_user_id AND key = p_key;
            IF FOUND AND v_key.request_fingerprint <> p_fingerprint THEN
                RETURN QUERY SELECT 'key_reused', 0, NULL::bytea, false;
                RETURN;
            ELSIF FOUND THEN
                RETURN QUERY
                    SELECT 'replayed', v_key.status_code::integer, v_key.response_body, false;
                RETURN;
            END IF;
        END IF;
    END IF;
    IF v_event.id IS NULL THEN
        RETURN QUERY SELECT 'no_event', 0, NULL::bytea, false;
        RETURN;
    END IF;

    INSERT INTO rsvps (id, event_id, user_id, status, guests, version)
    VALUES (gen_random_uuid(), p_event_id, p_user_id, p_status, p_guests, 1)
    ON CONFLICT (event_id, user_id) DO NOTHING
    RETURNING * INTO v_rsvp;
    IF v_rsvp.id IS NULL THEN
        SELECT * INTO v_before FROM rsvps
        WHERE event_id = p_event_id AND user_id = p_user_id FOR UPDATE;
        IF v_before.status = p_status AND v_before.guests = p_guests THEN
            v_rsvp := v_before;
            changed := false;
            SELECT coalesce(json_object_agg(channel, status ORDER BY channel), '{}'::json)
            INTO v_notifications FROM delivery_status WHERE rsvp_id = v_rsvp.id;
        ELSE
            UPDATE rsvps SET status = p_status, guests = p_guests,
                             version = version + 1, updated_at = now()
            WHERE id = v_before.id RETURNING * INTO v_rsvp;
        END IF;
    END IF;
    v_created := v_before.id IS NULL OR v_before.status = 'cancelled';

    IF changed THEN
        SELECT json_object_agg(c, 'pending'::text ORDER BY o) INTO v_notifications
        FROM unnest(p_channels) WITH ORDINALITY AS u(c, o);
        INSERT INTO delivery_status (rsvp_id, channel, status, rsvp_version)
        SELECT v_rsvp.id, c, 'pending', v_rsvp.version FROM unnest(p_channels) AS c
        ON CONFLICT (rsvp_id, channel) DO UPDATE
        SET status = 'pending', rsvp_version = EXCLUDED.rsvp_version,
            detail = NULL, updated_at = now()
        WHERE delivery_status.rsvp_version <= EXCLUDED.rsvp_version;

        v_type := CASE WHEN v_created THEN 'rsvp.created' ELSE 'rsvp.updated' END;
        INSERT INTO outbox (message_id, message_type, exchange, routing_key, body)
        VALUES (v_message_id, v_type, p_exchange, p_routing_key, convert_to(json_build_object(
            'message_id', v_message_id,
            'type', v_type,
            'schema_version', 1,
            'occurred_at', iso_utc(clock_timestamp()),
            'correlation_id', coalesce(p_correlation_id, v_message_id),
            'causation_id', NULL::uuid,
            'producer', p_producer,
            'data', json_build_object(
                'rsvp_id', v_rsvp.id,
                'event', json_build_object(
                    'event_id', v_event.id,
                    'title', v_event.title,
                    'starts_at', iso_utc(v_event.starts_at),
                    'ends_at', iso_utc(v_event.ends_at),
                    'location', v_event.location,
                    'organizer_name', v_event.organizer_name,
                    'organizer_email', v_event.organizer_email),
                'attendee', json_build_object(
                    'user_id', v_user.id, 'email', v_user.email, 'name', v_user.name),
                'status', v_rsvp.status,
                'previous_status', v_before.status,
                'guests', v_rsvp.guests,
                'version', v_rsvp.version)
        )::text, 'UTF8'));
    END IF;

    status_code := CASE WHEN v_created THEN 201 ELSE 200 END;
    v_reply := json_build_object(
        'id', v_rsvp.id,
        'event_id', v_rsvp.event_id,
        'user_id', v_rsvp.user_id,
        'status', v_rsvp.status,
        'guests', v_rsvp.guests,
        'version', v_rsvp.version,
        'created_at', iso_utc(v_rsvp.created_at),
        'updated_at', iso_utc(v_rsvp.updated_at),
        'notifications', v_notifications)::text;
    body := convert_to(v_reply, 'UTF8');
    IF v_claimed THEN
        UPDATE idempotency_keys SET status_code = answer_rsvp.status_code, response_body = body
        WHERE user_id = p_user_id AND key = p_key;
    END IF;
    outcome := 'stored';
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    op.execute(ISO_UTC_FUNCTION)
    op.execute(ANSWER_FUNCTION)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS answer_rsvp(uuid, uuid, text, integer, text, text, uuid, "
        "text, text[], text, text)"
    )
    op.execute("DROP FUNCTION IF EXISTS iso_utc(timestamptz)")
