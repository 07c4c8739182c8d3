"""The warped clock bench/simulate.py runs a server on: the same formula in every process, off by default."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from pydantic import ValidationError

from bot.config import Settings
from bot.models import utcnow
from bot.services import clock_for


def test_real_time_unless_a_simulation_is_configured():
    assert clock_for(Settings()) is utcnow


def test_the_simulated_clock_runs_speed_times_faster_from_start_at_anchor():
    start = dt.datetime(2026, 12, 1, 0, 0)
    anchor = time.time() - 10  # the simulated day began 10 real seconds ago
    clock = clock_for(Settings(simulation={"start": start.isoformat(), "anchor": anchor, "speed": 360}))
    elapsed = (clock() - start).total_seconds()
    assert 3600 - 60 <= elapsed <= 3600 + 360 * 5  # ~10 real s x 360 = 1 simulated hour


def test_start_and_anchor_go_together(monkeypatch):
    with pytest.raises(ValidationError, match="start and anchor"):
        Settings(simulation={"start": "2026-12-01T00:00:00"})
    monkeypatch.setenv("HOTLINE_SIMULATION__ANCHOR", "1700000000")
    with pytest.raises(ValidationError, match="start and anchor"):
        Settings()
