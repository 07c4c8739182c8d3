"""The real-server launcher lives in bench/live.py (benchmarks must not import tests/);
re-exported here so tests keep importing it from tests.live_server / tests.conftest."""
from bench.live import LiveServer, free_port, start_server, stop_server

__all__ = ["LiveServer", "free_port", "start_server", "stop_server"]
