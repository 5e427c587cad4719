"""The API keeps its own OpenAPI document: schemathesis ``--checks all`` finds nothing.

The real app is served by uvicorn on loopback, wired to the run's database,
vhost and Redis with the suite's roomy limits, and ``st run`` (schemathesis 4,
its command line, as an operator would run it) fuzzes every operation once as
a signed-in user and once as an admin. Bounded by ``--max-examples`` so the
two runs stay well under a minute and a half together.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from calendar_service.config import Settings
from tests.support.api import ADMIN_EMAIL, PASSWORD, random_email
from tests.support.served_api import served_api

pytestmark = pytest.mark.integration

#: Generated cases per operation and phase: enough to cross every declared
#: constraint, few enough for `make test`.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "8"))
#: The same cases on every run, so a failure here can be replayed; set another to explore.
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261130"))


@pytest.fixture(scope="module")
def api_url(calendar_settings: Settings) -> Iterator[str]:
    roomy = calendar_settings.model_copy(
        update={
            "rate_limit_admin": "100000/minute",
            "resend_limit": "100000/minute",
            "announcement_limit": "100000/minute",
        }
    )
    with served_api(roomy) as url:
        yield url


def bearer_of(api_url: str, email: str, *, register: bool) -> str:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        if register:
            answer = client.post(
                "/auth/register", json={"email": email, "password": PASSWORD, "name": "Fuzzer"}
            )
            assert answer.status_code in (201, 409), answer.text
        token = client.post("/auth/token", data={"username": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return str(token.json()["access_token"])


CONFIG = Path(__file__).with_name("schemathesis.toml")
REPO = Path(__file__).resolve().parents[3]


def schemathesis_run(api_url: str, token: str, workdir: Path) -> subprocess.Popen[str]:
    """Start ``st run --checks all`` against the served API with ``token``'s rights.

    The examples, coverage and fuzzing phases (the stateful phase would
    double the time), with the hooks of ``tests/support/schemathesis_hooks.py``
    for the two rules a schema cannot state. One worker: hypothesis describes
    its strategies by parsing source, which is not safe across threads.
    """
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "--config-file",
        str(CONFIG),
        "run",
        f"{api_url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--phases",
        "examples,coverage,fuzzing",
        "--output-truncate",
        "true",
    ]
    workdir.mkdir()
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "PYTHONPATH": str(REPO),
            "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks",
        },
    )


def cases_generated(output: str) -> int:
    """The "N generated" of the run's summary."""
    found = re.search(r"(\d+) generated", output)
    assert found, output
    return int(found.group(1))


@pytest.mark.timeout(400)
def test_schemathesis_finds_nothing_wrong_as_a_user_or_as_an_admin(
    api_url: str, tmp_path: Path
) -> None:
    tokens = {
        "user": bearer_of(api_url, random_email("fuzz"), register=True),
        "admin": bearer_of(api_url, ADMIN_EMAIL, register=True),
    }

    # both at once: the server is the one under test, the two runs only read their tokens
    runs = {who: schemathesis_run(api_url, token, tmp_path / who) for who, token in tokens.items()}
    outputs = {who: run.communicate(timeout=360)[0] for who, run in runs.items()}

    for who, output in outputs.items():
        print(f"--- as {who} ---\n{output}")  # the figures: phases, cases generated
    for who, run in runs.items():
        output = outputs[who]
        assert run.returncode == 0, output
        generated = cases_generated(output)
        assert f"{generated} generated, {generated} passed" in output, output
        assert generated >= 100, output
