"""`python -m email_consumer`: send the emails of ``email.rsvp_events`` and ``email.commands``.

Run as many processes as you like: they compete for the same queues. The
wiring is in ``email_consumer.bootstrap``; the skeleton in ``shared.service``.
"""

from email_consumer.bootstrap import bootstrap
from email_consumer.config import Settings
from shared.service.process import run_service


def main() -> None:
    settings = Settings()
    run_service("email", settings, lambda: bootstrap(settings))


if __name__ == "__main__":
    main()
