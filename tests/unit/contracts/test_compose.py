"""The Docker deployment (compose.yaml, Dockerfile, nginx and RabbitMQ config) as a spec.

Docker is not needed: the compose file is checked against the Compose
Specification's JSON Schema and read as data, so a broken wiring (a service
that no longer waits for its migrations, a consumer that cannot be scaled, a
broker user that does not match the definitions) fails here, not at `make up`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic
import pytest
import yaml

from calendar_service.config import Settings as CalendarSettings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "compose.yaml"

#: Every process of the system (design §7) and the compose services running it.
PROCESSES = {
    "calendar_service.migrate": {"migrate"},
    "calendar_service": {"calendar-1", "calendar-2"},
    "calendar_service.relay": {"relay"},
    "calendar_service.delivery_reports": {"delivery_reports"},
    "calendar_service.scheduler": {"scheduler"},
    "calendar_service.deadletters": {"deadletters"},
    "email_consumer": {"email_consumer"},
    "push_consumer": {"push_consumer"},
}
APP_SERVICES = set().union(*PROCESSES.values())
BACKING_SERVICES = {"postgres", "redis", "rabbitmq"}
SCALABLE_CONSUMERS = {"email_consumer", "push_consumer"}
#: Background processes serve /healthz, /readyz and /metrics on these ports.
METRICS_PORTS = {
    "relay": 9101,
    "delivery_reports": 9102,
    "email_consumer": 9103,
    "push_consumer": 9104,
    "scheduler": 9105,
    "deadletters": 9106,
}

#: The settings the services read (design §7): the names are the contract.
CONTRACT_SETTINGS = {
    "DATABASE_URL", "AMQP_URL", "RABBITMQ_MANAGEMENT_URL", "REDIS_URL",
    "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_STARTTLS",
    "MAIL_FROM", "VAPID_PRIVATE_KEY", "VAPID_SUBJECT", "JWT_SECRET", "HOST", "PORT",
    "ADMIN_EMAILS", "APP_ENV", "METRICS_PORT", "DEAD_LETTER_RETENTION", "ADMIN_AMQP_URL",
}  # fmt: skip
#: The PostgreSQL role each process logs in as (migration 0011 creates and grants them).
SERVICE_ROLES = {
    "calendar_service": "rsvp_api",
    "calendar_service.relay": "rsvp_relay",
    "calendar_service.delivery_reports": "rsvp_reports",
    "calendar_service.scheduler": "rsvp_scheduler",
    "calendar_service.deadletters": "rsvp_archiver",
    "email_consumer": "rsvp_email",
    "push_consumer": "rsvp_push",
}
#: The API's own (passed to uvicorn): which peers may set X-Forwarded-For (nginx).
UVICORN_SETTINGS = {"FORWARDED_ALLOW_IPS"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(compose["services"])


@pytest.fixture(scope="module")
def broker_definitions() -> dict[str, Any]:
    return dict(json.loads((ROOT / "broker" / "definitions.json").read_text()))


def _module_run_by(service: dict[str, Any]) -> str | None:
    command = service.get("command", [])
    return command[2] if command[:2] == ["python", "-m"] else None


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path, for the short `host:container[:ro]` syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = source
    return mounts


def _published_ports(service: dict[str, Any]) -> set[int]:
    """Host ports, from `[ip:]host:container` entries."""
    return {int(port.split(":")[-2]) for port in service.get("ports", [])}


def _rabbitmq_conf() -> dict[str, str]:
    settings = {}
    for line in (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def _rabbitmq_password_matches(password: str, password_hash: str) -> bool:
    """rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), 4-byte salt."""
    raw = base64.b64decode(password_hash)
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


@pytest.mark.parametrize("compose_file", ["compose.yaml", "compose.production.yaml"])
def test_compose_files_follow_the_compose_specification(compose_file: str) -> None:
    check_jsonschema = Path(sys.executable).parent / "check-jsonschema"
    assert check_jsonschema.exists(), "check-jsonschema is missing: make venv"

    result = subprocess.run(
        [
            str(check_jsonschema),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / compose_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_process_of_the_system_is_a_service(services: dict[str, Any]) -> None:
    running: dict[str, set[str]] = {}
    for name, service in services.items():
        if (module := _module_run_by(service)) is not None:
            running.setdefault(module, set()).add(name)

    assert running == PROCESSES


def test_one_image_runs_every_process(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    builds = {services[name]["build"] for name in APP_SERVICES}

    assert len(images) == 1
    assert builds == {"."}


def test_migrations_run_once_and_are_not_restarted(services: dict[str, Any]) -> None:
    assert services["migrate"]["restart"] == "no"
    assert "healthcheck" not in services["migrate"]


def test_services_wait_for_migrations_and_healthy_dependencies(services: dict[str, Any]) -> None:
    for name in APP_SERVICES - {"migrate"}:
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

        assert conditions.pop("migrate") == "service_completed_successfully", name
        assert conditions.keys() >= BACKING_SERVICES, name
        assert set(conditions.values()) == {"service_healthy"}, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name == "migrate":
            continue

        assert service["restart"] == "unless-stopped", name
        assert "healthcheck" in service, name
        assert not service["healthcheck"].get("disable", False), name
        assert service["healthcheck"]["test"], name


def test_background_processes_are_checked_on_their_metrics_port(
    services: dict[str, Any],
) -> None:
    for name, port in METRICS_PORTS.items():
        service = services[name]
        check = " ".join(service["healthcheck"]["test"])

        assert int(service["environment"]["METRICS_PORT"]) == port, name
        assert 'os.environ["METRICS_PORT"]' in check, name
        assert "/healthz" in check, name


def test_consumers_can_be_scaled(services: dict[str, Any]) -> None:
    for name in SCALABLE_CONSUMERS:
        assert "container_name" not in services[name], name
        assert "ports" not in services[name], name


def test_the_api_is_reached_only_through_nginx(services: dict[str, Any]) -> None:
    published = {name: _published_ports(service) for name, service in services.items()}

    assert published["nginx"] == {8000}
    assert not any(published[name] for name in APP_SERVICES)


def test_services_are_configured_by_the_contract_names_only(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        names = set(services[name]["environment"])

        assert names <= CONTRACT_SETTINGS | UVICORN_SETTINGS, name
        assert {"APP_ENV", "DATABASE_URL", "AMQP_URL"} <= names, name


def test_each_service_uses_its_own_broker_user(services: dict[str, Any]) -> None:
    expected_user = dict.fromkeys(APP_SERVICES - SCALABLE_CONSUMERS, "calendar")
    expected_user |= {"email_consumer": "email", "push_consumer": "push"}

    for name, user in expected_user.items():
        url = urlsplit(services[name]["environment"]["AMQP_URL"])

        assert (url.username, url.hostname, url.port, url.path) == (
            user,
            "rabbitmq",
            5672,
            "/rsvp",
        ), name


def test_the_internet_facing_api_holds_no_operator_account(services: dict[str, Any]) -> None:
    for name in PROCESSES["calendar_service"]:
        environment = services[name]["environment"]
        users = {urlsplit(url).username for key, url in environment.items() if key.endswith("_URL")}

        assert "RABBITMQ_MANAGEMENT_URL" not in environment, name
        assert urlsplit(environment["ADMIN_AMQP_URL"]).username == "dlq-admin", name
        assert not users & {"ops", "postgres"}, name


def test_each_service_logs_in_to_postgresql_as_its_own_role(services: dict[str, Any]) -> None:
    roles = {name: urlsplit(services[name]["environment"]["DATABASE_URL"]) for name in APP_SERVICES}

    assert roles.pop("migrate").username == "postgres"  # the owner applies the migrations
    assert {url.username for url in roles.values()} == set(SERVICE_ROLES.values())
    for name, url in roles.items():
        assert url.username == SERVICE_ROLES[_module_run_by(services[name]) or ""], name
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/rsvp"), name


def test_broker_credentials_match_the_checked_in_definitions(
    services: dict[str, Any], broker_definitions: dict[str, Any]
) -> None:
    users = {user["name"]: user for user in broker_definitions["users"]}
    permitted = {(p["user"], p["vhost"]) for p in broker_definitions["permissions"]}
    urls = {
        services[name]["environment"][setting]
        for name in APP_SERVICES
        for setting in ("AMQP_URL", "RABBITMQ_MANAGEMENT_URL", "ADMIN_AMQP_URL")
        if setting in services[name]["environment"]
    }

    for url in map(urlsplit, urls):
        assert url.username in users, url.geturl()
        assert url.password is not None
        assert _rabbitmq_password_matches(url.password, users[url.username]["password_hash"])
        assert (url.username, "rsvp") in permitted


def test_rabbitmq_loads_the_checked_in_definitions_at_boot(services: dict[str, Any]) -> None:
    mounts = _bind_mounts(services["rabbitmq"])
    conf_path = _rabbitmq_conf()["load_definitions"]

    assert mounts[conf_path] == "./broker/definitions.json"
    assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./deploy/rabbitmq/rabbitmq.conf"
    assert (ROOT / mounts[conf_path]).is_file()


def test_rabbitmq_enables_the_plugins_the_system_needs(services: dict[str, Any]) -> None:
    mounts = _bind_mounts(services["rabbitmq"])
    text = (ROOT / mounts["/etc/rabbitmq/enabled_plugins"]).read_text().strip()

    # An Erlang term: a list of atoms, closed by a full stop.
    term = re.fullmatch(r"\[([\w,\s]*)\]\.", text)
    assert term is not None, text
    plugins = {plugin.strip() for plugin in term[1].split(",")}
    assert plugins == {
        "rabbitmq_management",
        "rabbitmq_shovel",
        "rabbitmq_shovel_management",
        "rabbitmq_prometheus",
    }


def test_redis_keeps_nothing_on_disk(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]

    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert "volumes" not in services["redis"]


def _nginx_conf(services: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """nginx.conf without comments, and each ``site/`` include's text, as compose mounts them."""
    mounts = _bind_mounts(services["nginx"])
    conf = re.sub(r"#.*", "", (ROOT / mounts["/etc/nginx/nginx.conf"]).read_text())
    includes = {}
    for name in re.findall(r"^\s*include\s+(site/[\w.-]+);", conf, flags=re.MULTILINE):
        text = (ROOT / mounts["/etc/nginx/site"] / name.removeprefix("site/")).read_text()
        includes[name] = re.sub(r"#.*", "", text)  # comments may mention anything
    return conf, includes


def test_nginx_config_mounts_every_file_it_includes(services: dict[str, Any]) -> None:
    _, includes = _nginx_conf(services)

    assert set(includes) == {"site/http.conf", "site/replicas.conf", "site/listen.conf"}
    assert re.search(r"^\s*listen\s+80;", includes["site/listen.conf"], flags=re.MULTILINE)


def test_nginx_balances_both_api_replicas(services: dict[str, Any]) -> None:
    conf, includes = _nginx_conf(services)
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream is not None
    name, body = upstream.groups()
    assert "include site/replicas.conf;" in body
    servers = re.findall(
        r"^\s*server\s+([\w.-]+):(\d+)\s+(.*);", includes["site/replicas.conf"], flags=re.MULTILINE
    )

    assert {replica for replica, _, _ in servers} == PROCESSES["calendar_service"]
    for replica, port, options in servers:
        assert services[replica]["environment"]["PORT"] == port
        # passive health: a replica that keeps failing is left out for a while
        assert re.search(r"\bmax_fails=\d+", options), options
        assert re.search(r"\bfail_timeout=\d+s", options), options
    assert re.search(rf"proxy_pass\s+http://{name};", conf)
    assert re.search(r"^\s*keepalive\s+\d+;", body, flags=re.MULTILINE)


def test_nginx_resends_no_write_but_a_keyed_rsvp_answer(services: dict[str, Any]) -> None:
    conf, _ = _nginx_conf(services)
    retries = re.findall(r"proxy_next_upstream\s+([^;]*);", conf)

    assert sorted(retries) == ["error timeout", "error timeout non_idempotent"]
    keyed = re.search(r"location\s+@retry_safe_write\s*\{([^}]*)\}", conf)
    assert keyed is not None
    assert "non_idempotent" in keyed[1]
    assert re.search(r'"~\^POST /events/\[\^/\]\+/rsvps 1\$"\s+1;', conf)


def test_nginx_sets_the_client_address_the_api_believes(services: dict[str, Any]) -> None:
    conf, _ = _nginx_conf(services)

    # overwritten with the peer's address, never appended to what the client sent
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", conf)
    assert "$proxy_add_x_forwarded_for" not in conf
    for replica in PROCESSES["calendar_service"]:
        assert services[replica]["environment"]["FORWARDED_ALLOW_IPS"]


def test_default_jwt_secret_works_in_dev_and_is_refused_in_prod(
    services: dict[str, Any],
) -> None:
    setting = services["calendar-1"]["environment"]["JWT_SECRET"]
    default = re.fullmatch(r"\$\{JWT_SECRET:-(.+)\}", setting)
    assert default is not None, "JWT_SECRET should come from the host, with a dev default"

    CalendarSettings(app_env="dev", jwt_secret=default[1])
    with pytest.raises(pydantic.ValidationError, match="JWT_SECRET"):
        CalendarSettings(app_env="prod", jwt_secret=default[1])


def test_image_holds_every_package_of_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    allowed_in_context = (ROOT / ".dockerignore").read_text().splitlines()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}

    for package in packages:
        assert re.search(rf"^COPY {package} ", dockerfile, flags=re.MULTILINE), package
        assert f"!{package}" in allowed_in_context, package
    assert re.search(r"^RUN pip install \.$", dockerfile, flags=re.MULTILINE), "no dev extras"


def test_dockerfile_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users, "the image must switch to an unprivileged user"
    user = users[-1].split(":")[0]

    assert user not in {"root", "0"}
    assert re.search(rf"useradd\b.*\b{user}$", dockerfile, flags=re.MULTILINE)


def _prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    return config


def test_prometheus_scrapes_every_process_on_its_metrics_port(services: dict[str, Any]) -> None:
    targets: set[str] = set()
    for job in _prometheus_config()["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.update(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            targets.update(f"{name}:{dns['port']}" for name in dns["names"])

    expected = {f"{name}:{port}" for name, port in METRICS_PORTS.items()}
    expected |= {f"{name}:8000" for name in PROCESSES["calendar_service"]}
    assert expected <= targets
    assert "rabbitmq:15692" in targets
    assert {"prometheus", "grafana"} <= services.keys()


def test_competing_consumers_are_found_by_dns_so_scaled_replicas_are_scraped() -> None:
    jobs = {job["job_name"]: job for job in _prometheus_config()["scrape_configs"]}

    for job in ("email", "push"):
        assert jobs[job]["dns_sd_configs"][0]["type"] == "A", job


def test_grafana_provisions_the_dashboard_kept_in_the_repo(services: dict[str, Any]) -> None:
    volumes = services["grafana"]["volumes"]

    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    provisioning = ROOT / "deploy/grafana/provisioning"
    provider = yaml.safe_load((provisioning / "dashboards/rsvp.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/rsvp-pipeline.json").read_text())
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
