"""`python -m push_consumer`: send the Web Push notifications of ``push.rsvp_events`` and
``push.commands``.

Run as many processes as you like: they compete for the same queues. The
wiring is in ``push_consumer.bootstrap``; the skeleton in ``shared.service``.
"""

from push_consumer.bootstrap import bootstrap
from push_consumer.config import Settings
from shared.service.process import run_service


def main() -> None:
    settings = Settings()
    run_service("push", settings, lambda: bootstrap(settings))


if __name__ == "__main__":
    main()
