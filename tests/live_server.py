"""The real-server launcher lives in bench/live.py (benchmarks must not import tests/);
tests start servers through this wrapper, which gives every server the suite's fixed moment."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from bench import live
from bench.live import LiveServer, free_port, stop_server

__all__ = ["NOW", "TEST_STATEMENT_TIMEOUT", "LiveServer", "free_port", "start_server", "stop_server"]

# A fixed moment (a Tuesday, 16:00 in Shanghai): every date-dependent decision sees this.
NOW = dt.datetime(2026, 12, 1, 8, 0, 0)

# The suite's statement timeout (production: 1.2 s, a transaction's deadline 0.3 s more): under -n 4 a first
# transaction on a fresh PostgreSQL database outlived it (2026-12-02: test_analytics's setup "exceeded its
# deadline", a real server's first message a 503 in test_multiprocess). The tests of the deadline set their own.
TEST_STATEMENT_TIMEOUT = 5.0

# The abuse limits' counters in the shared Redis, one prefix per test process: with one fixed prefix every
# run's handoffs from 127.0.0.1 stayed counted for an hour (10 an hour), and test_multiprocess got a 429.
LIMITS_KEY_PREFIX = f"hotline-test-{uuid.uuid4().hex[:12]}"


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, **kwargs: Any) -> LiveServer:
    """``bench.live.start_server`` with the server's clock starting at ``NOW`` and running at real
    speed (the simulated clock of ``settings.simulation``), so what a real server answers — an entry
    past its ``valid_until``, opening hours, windows — does not depend on the day the suite runs.
    Without it the browser tests failed once testing.pcr_fee expired (run under faketime +300 days).
    The database's statement timeout is the suite's (``TEST_STATEMENT_TIMEOUT``) unless ``extra_env`` sets it.
    A restart with the server's own ``env`` keeps the same anchor: its clock goes on, not back."""
    env = {"HOTLINE_SIMULATION__START": NOW.isoformat(), "HOTLINE_SIMULATION__ANCHOR": repr(time.time()),
           "HOTLINE_DB__STATEMENT_TIMEOUT": str(TEST_STATEMENT_TIMEOUT), "HOTLINE_LIMITS__KEY_PREFIX": LIMITS_KEY_PREFIX}
    env.update(extra_env or {})
    return live.start_server(data_dir, env, **kwargs)
