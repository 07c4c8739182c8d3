"""A real ``hotline-bot serve`` subprocess on 127.0.0.1, for benchmarks and tests.

The benchmark talks to the server only over HTTP and observes it only through
its process tree in /proc, so it measures the same thing whatever ``serve`` runs
(today a gunicorn master with uvicorn worker processes): CPU time and memory are
summed over the root process and all its descendants.

``tests/live_server.py`` re-exports this module; nothing here imports tests/.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.config import PROJECT_ROOT

# The environment of a server that a load generator drives: one client on 127.0.0.1 stands for thousands
# of citizens, and with the abuse limits on the server answers it 429 after the first few dozen messages
# (measured: 1,460 of 1,500), so a run would time the limiter (bench.rasa.compare did: 191–1,971 errors a
# run). The limits have their own tests (tests/security/test_limits.py).
LOAD_GENERATOR_ENV = {"HOTLINE_LIMITS__ENABLED": "0"}

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, log_path: Path, env: dict[str, str],
                 started_at: float | None = None, healthy_at: float | None = None):
        self.url = url
        self.process = process
        self.log_path = log_path
        self.env = env
        self.started_at = started_at  # time.perf_counter() just before spawn
        self.healthy_at = healthy_at  # ... when /healthz first answered as asked

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, healthy: bool = True,
                 timeout: float = 120, port: int | None = None) -> LiveServer:
    """``hotline-bot serve`` as a real subprocess, waiting for /readyz (200: models warm, schema
    current), or for /healthz to answer 503 when ``healthy`` is False (a server whose database is down).

    The server gets its own session (process group), so ``stop_server`` can also
    stop worker processes a multi-process server may leave behind. ``port``: a fixed one (a
    restart after a crash keeps its address); a free one by default."""
    port = port or free_port()
    env = os.environ.copy()
    env.pop("DATABASE_URL", None)
    env.update({"HOTLINE_DATA_DIR": str(data_dir), "HOTLINE_SERVER__PORT": str(port),
                "HOTLINE_SERVER__HOST": "127.0.0.1", "HOTLINE_SERVER__WORKERS": "2", "HOTLINE_COOKIE_SECURE": "0"})
    env.update(extra_env or {})
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        started_at = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "connectors.cli", "serve"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
            try:
                status = client.get(url + ("/readyz" if healthy else "/healthz")).status_code
                if status == 200 or (not healthy and status == 503):
                    return LiveServer(url, process, log_path, env, started_at, time.perf_counter())
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    _kill_group(process)
    raise RuntimeError(f"server did not become healthy:\n{log_path.read_text(errors='replace')}")


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group start_server created, led by our child
    except ProcessLookupError:
        pass
    process.wait()


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(server.process)  # workers a master failed to stop, or a hung server


# -- observing the server's process tree -------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on; comm may hold spaces


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant (a multi-process server's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


@dataclass(frozen=True)
class TreeUsage:
    processes: int
    cpu_seconds: float  # user + system, live processes plus the children they have reaped
    rss_mb: float  # sum of RSS: pages shared between workers counted once per process
    pss_mb: float  # proportional set size: shared pages split between the processes sharing them


def tree_usage(root: int) -> TreeUsage:
    """CPU and memory of the server's whole process tree, read from /proc.

    Per live process utime + stime + cutime + cstime: a worker that exited and was
    reaped by its master still counts (in the master's cutime/cstime), once."""
    ticks, rss_kb, pss_kb, count = 0, 0, 0, 0
    for pid in process_tree(root):
        try:
            fields = _stat_fields(pid)
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # stat fields 14-17
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except (OSError, IndexError, ValueError):
            continue
        for line in rollup:
            if line.startswith("Rss:"):
                rss_kb += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss_kb += int(line.split()[1])
        count += 1
    return TreeUsage(count, ticks / _CLOCK_TICKS, rss_kb / 1024, pss_kb / 1024)


def self_cpu_seconds() -> float:
    """CPU (user + system) of this process: the load generator's own cost."""
    usage = os.times()
    return usage.user + usage.system
