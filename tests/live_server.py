"""The real-server launcher lives in bench/live.py (benchmarks must not import tests/);
tests start servers through this wrapper, which gives every server the suite's fixed moment."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from bench import live
from bench.live import LiveServer, free_port, stop_server

__all__ = ["NOW", "LiveServer", "free_port", "start_server", "stop_server"]

# A fixed moment (a Tuesday, 16:00 in Shanghai): every date-dependent decision sees this.
NOW = dt.datetime(2026, 12, 1, 8, 0, 0)


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, **kwargs: Any) -> LiveServer:
    """``bench.live.start_server`` with the server's clock starting at ``NOW`` and running at real
    speed (the simulated clock of ``settings.simulation``), so what a real server answers — an entry
    past its ``valid_until``, opening hours, windows — does not depend on the day the suite runs.
    Without it the browser tests failed once testing.pcr_fee expired (run under faketime +300 days).
    A restart with the server's own ``env`` keeps the same anchor: its clock goes on, not back."""
    env = {"HOTLINE_SIMULATION__START": NOW.isoformat(), "HOTLINE_SIMULATION__ANCHOR": repr(time.time())}
    env.update(extra_env or {})
    return live.start_server(data_dir, env, **kwargs)
