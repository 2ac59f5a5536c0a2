"""Fixtures for the integration tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workflows_tick.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 1, 1, 12, 0, 30, tzinfo=UTC))
