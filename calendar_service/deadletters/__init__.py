"""``python -m calendar_service.deadletters``: the dead-letter archiver (design §9).

It consumes every ``*.dlq`` queue of the topology, stores each dead letter
in PostgreSQL (:mod:`shared.dlq.archive`) and only then acks it, so the
queue is a buffer and the table is the record operators query, group,
replay and delete from. It also removes replayed and deleted rows older than
``DEAD_LETTER_RETENTION``.
"""
