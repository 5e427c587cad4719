# One image for every process of the system; the command picks the process:
#   python -m calendar_service                   the HTTP API (HOST:PORT, 0.0.0.0:8000 here)
#   python -m calendar_service.migrate           alembic upgrade head, then exit
#   python -m calendar_service.relay             outbox -> RabbitMQ
#   python -m calendar_service.delivery_reports  delivery status from follow-up events
#   python -m calendar_service.scheduler         reminders and announcement fan-out
#   python -m email_consumer                     RSVP events and commands -> SMTP
#   python -m push_consumer                      RSVP events and commands -> Web Push
# compose.yaml runs each of them as a service.

# --- build: install the project and its runtime dependencies into a venv ----
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# pyproject.toml names README.md (long description) and LICENSE (license-files): they come too.
COPY pyproject.toml README.md LICENSE ./
COPY calendar_service ./calendar_service
COPY email_consumer ./email_consumer
COPY push_consumer ./push_consumer
COPY shared ./shared
COPY devtools ./devtools
# A regular (not editable) install without the dev extras: the venv holds all
# the code, templates and migrations, so the runtime stage needs no source.
RUN pip install .

# --- runtime: the venv and an unprivileged user, nothing else ---------------
FROM python:3.11-slim

# Unbuffered: log lines reach `docker compose logs` as they are written.
# No bytecode writes: pip compiled the venv already, and it is not ours to write.
# HOST: the API listens on every interface of the container, not its loopback.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0

# A fixed uid/gid, so file ownership on mounted volumes is predictable.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER app:app

EXPOSE 8000
CMD ["python", "-m", "calendar_service"]
