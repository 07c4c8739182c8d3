"""A real ``hotline-bot serve`` subprocess on 127.0.0.1, for tests and benchmarks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bot.config import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, log_path: Path, env: dict[str, str]):
        self.url = url
        self.process = process
        self.log_path = log_path
        self.env = env

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, healthy: bool = True) -> LiveServer:
    """``hotline-bot serve`` as a real subprocess (waitress), waiting for /healthz
    (200, or 503 when ``healthy`` is False: a server whose database is down)."""
    port = free_port()
    env = os.environ.copy()
    env.pop("DATABASE_URL", None)
    env.update({"HOTLINE_DATA_DIR": str(data_dir), "HOTLINE_SERVER__PORT": str(port),
                "HOTLINE_SERVER__HOST": "127.0.0.1", "HOTLINE_SERVER__WORKERS": "2", "HOTLINE_COOKIE_SECURE": "0"})
    env.update(extra_env or {})
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "connectors.cli", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            status = httpx.get(url + ("/readyz" if healthy else "/healthz"), timeout=1).status_code
            if status == 200 or (not healthy and status == 503):
                return LiveServer(url, process, log_path, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"server did not become healthy:\n{log_path.read_text(errors='replace')}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
