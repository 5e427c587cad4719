"""``python -m shared.dlq``: the same CLI as the ``rsvp-dlq`` console script."""

from shared.dlq.cli import main

main()
