"""`python -m calendar_service.scheduler` as a process: a scheduler whose pass dies
unexpectedly ends its process (exit code 1) rather than living on without passes."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from calendar_service.config import Settings
from calendar_service.scheduler import bootstrap
from shared.service.process import EXIT_DIED, supervise
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


def broken_clock() -> datetime:
    raise RuntimeError("a bug in a pass")


async def test_a_scheduler_whose_pass_dies_ends_its_process_with_exit_code_1(
    calendar_settings: Settings,
) -> None:
    code = await asyncio.wait_for(
        supervise(
            lambda: bootstrap(calendar_settings, clock=broken_clock), metrics_port=free_port()
        ),
        timeout=30,
    )

    assert code == EXIT_DIED
