"""compose.production.yaml over compose.yaml: APP_ENV=prod, secrets only from the environment.

Read as data, merged as Compose merges an override file (environment entries
key by key, volumes by container path), and interpolated as Compose does
(``${NAME:?message}`` required, ``${NAME:-default}``). Each process's own
Settings then judges the result: it starts with real secrets, and it refuses
compose.yaml's development values once APP_ENV=prod.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pydantic
import pytest
import yaml
from pydantic_settings import BaseSettings

from calendar_service.config import ApiSettings
from calendar_service.config import Settings as CalendarSettings
from calendar_service.deadletters.archiver import ArchiverSettings
from devtools.run import plan
from email_consumer.config import Settings as EmailSettings
from push_consumer.config import Settings as PushSettings
from push_consumer.vapid import generate_private_key, private_key_text
from shared.production import PUBLISHED_VAPID_KEYS
from tests.unit.contracts.test_compose import APP_SERVICES, ROOT, SERVICE_ROLES

PRODUCTION_FILE = ROOT / "compose.production.yaml"
MIGRATION = ROOT / "calendar_service/db/migrations/versions/0011_service_roles.py"

#: The Settings class each compose service's process builds at start-up.
SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "migrate": CalendarSettings,
    "calendar-1": ApiSettings,
    "calendar-2": ApiSettings,
    "relay": CalendarSettings,
    "delivery_reports": CalendarSettings,
    "scheduler": CalendarSettings,
    "deadletters": ArchiverSettings,
    "email_consumer": EmailSettings,
    "push_consumer": PushSettings,
}
SECRET_SETTINGS = {"JWT_SECRET", "VAPID_PRIVATE_KEY", "SMTP_PASSWORD"}
URL_SETTINGS = {"DATABASE_URL", "AMQP_URL", "ADMIN_AMQP_URL", "RABBITMQ_MANAGEMENT_URL"}
VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def _mount(volume: str) -> tuple[str, str]:
    """(source, container path) of ``source:target[:mode]``; the source may hold ``${…:?…}``."""
    target = VARIABLE.sub("X", volume).split(":")[1]
    return volume[: volume.index(f":{target}")], target


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "environment":
            merged[key] = {**base.get(key, {}), **value}
        elif key == "volumes":
            targets = {_mount(volume)[1] for volume in value}
            kept = [v for v in base.get(key, []) if _mount(v)[1] not in targets]
            merged[key] = kept + list(value)
        else:
            merged[key] = value
    return merged


def _interpolate(value: str, environment: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, kind, text = match.groups()
        if name in environment:
            return environment[name]
        if kind == "?":
            raise LookupError(f"{name}: {text}")
        return text if kind == "-" else ""

    return VARIABLE.sub(one, value)


@pytest.fixture(scope="module")
def development() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text())["services"])


@pytest.fixture(scope="module")
def production(development: dict[str, Any]) -> dict[str, Any]:
    override = yaml.safe_load(PRODUCTION_FILE.read_text())["services"]
    return {name: _merge(service, override.get(name, {})) for name, service in development.items()}


def _real_secrets(production: dict[str, Any]) -> dict[str, str]:
    """A value for every variable the production file requires (none of them a dev one)."""
    required = {
        match[0]
        for service in production.values()
        for value in [*service.get("environment", {}).values(), *service.get("volumes", [])]
        for match in VARIABLE.findall(str(value))
        if match[1] == "?"
    }
    secrets = {name: f"real-{name.lower()}-0123456789abcdefghijklmnop" for name in required}
    secrets["VAPID_PRIVATE_KEY"] = private_key_text(generate_private_key())
    secrets["RABBITMQ_DEFINITIONS"] = "/srv/rsvp/definitions.json"
    return secrets


def _settings(cls: type[BaseSettings], environment: dict[str, Any], env: dict[str, str]) -> None:
    values = {key.lower(): _interpolate(str(value), env) for key, value in environment.items()}
    cls(**{key: value for key, value in values.items() if key in cls.model_fields})


def test_the_production_file_sets_app_env_prod_for_every_process(
    production: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        assert production[name]["environment"]["APP_ENV"] == "prod", name


def test_every_secret_is_required_from_the_environment_with_no_default(
    production: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        environment = production[name]["environment"]
        for key, value in environment.items():
            if key in SECRET_SETTINGS:
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), (name, key)
            if key in URL_SETTINGS:
                # user:password@host, where the password is a ${…} expression
                password = re.fullmatch(r"[\w+]+://[\w-]+:(.*)@[\w.:]+(/\w*)?", value)
                assert password is not None, (name, key)
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", password[1]), (name, key)
        assert environment.get("ADMIN_EMAILS", "") == "", name


def test_the_broker_loads_the_operators_definitions_not_the_checked_in_ones(
    production: dict[str, Any],
) -> None:
    mounts = {_mount(v)[1]: _mount(v)[0] for v in production["rabbitmq"]["volumes"]}

    assert mounts["/etc/rabbitmq/definitions.json"].startswith("${RABBITMQ_DEFINITIONS:?")


@pytest.mark.parametrize("service", sorted(SETTINGS_OF))
def test_each_process_starts_with_the_production_file_and_real_secrets(
    production: dict[str, Any], service: str
) -> None:
    environment = production[service]["environment"]

    _settings(SETTINGS_OF[service], environment, _real_secrets(production))
    with pytest.raises(LookupError):  # compose itself stops when a secret is missing
        _settings(SETTINGS_OF[service], environment, {})


@pytest.mark.parametrize("service", sorted(SETTINGS_OF))
def test_each_process_refuses_the_development_values_under_app_env_prod(
    development: dict[str, Any], service: str
) -> None:
    environment = {**development[service]["environment"], "APP_ENV": "prod"}

    _settings(SETTINGS_OF[service], development[service]["environment"], {})
    with pytest.raises(pydantic.ValidationError, match="refusing to start with APP_ENV=prod"):
        _settings(SETTINGS_OF[service], environment, {})


def test_the_published_vapid_key_of_compose_is_one_prod_refuses(
    development: dict[str, Any],
) -> None:
    setting = development["push_consumer"]["environment"]["VAPID_PRIVATE_KEY"]

    assert _interpolate(setting, {}) in PUBLISHED_VAPID_KEYS


def test_compose_make_run_and_the_migration_name_the_same_roles() -> None:
    spec = importlib.util.spec_from_file_location("service_roles", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    make_run = {p.module: p.role for p in plan(9100, smtp_external=True) if p.role}

    assert set(migration.GRANTS) == set(SERVICE_ROLES.values())
    assert make_run == SERVICE_ROLES
