"""Waiting citizens park no request thread (the asynchronous front), on a real server.

Regression: with one thread per waiting citizen, 40 long polls pushed everyone else's
message latency to p50 16.8 s and /healthz to 16.8 s.
"""
from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import start_server, stop_server

WAITING = 300


async def _park(url: str, conversation_id: str, user_id: str, state: str, count: int, seconds: float):
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=url, timeout=seconds + 10, limits=limits) as client:
        params = {"user_id": user_id, "after": 10**9, "wait": seconds, "state": state}
        return await asyncio.gather(*(client.get(f"/web/api/conversations/{conversation_id}/turns", params=params)
                                      for _ in range(count)))


def test_hundreds_of_waiting_citizens_do_not_slow_anyone_down(session_dir, engine, tmp_path):
    server = start_server(session_dir / "var", {"DATABASE_URL": f"sqlite:///{tmp_path / 'lp.db'}",
                                                "HOTLINE_SERVER__THREADS": "4", "HOTLINE_LIMITS__ENABLED": "0"})
    try:
        with server.client() as client:
            first = client.post("/web/api/messages", json={"user_id": "waiting-citizen-0001",
                                                           "text": "/ask_human"}).json()
        loop = asyncio.new_event_loop()
        parked = loop.create_task(_park(server.url, first["conversation_id"], "waiting-citizen-0001",
                                        first["state"], WAITING, 8))
        loop.run_until_complete(asyncio.sleep(2.0))  # the polls are parked (8 s each)
        timings = []
        with server.client() as client:
            for i in range(20):
                started = time.monotonic()
                response = client.post("/web/api/messages", json={"user_id": f"other-citizen-{i:05d}",
                                                                  "text": "核酸检测多少钱"})
                timings.append(time.monotonic() - started)
                assert response.status_code == 200
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            healthz = time.monotonic() - started
        # 4 request threads per worker: were the waits holding threads, these would queue for 8 s
        assert max(timings) < 3 and healthz < 1, (timings, healthz)
        responses = loop.run_until_complete(parked)
        loop.close()
        assert all(r.status_code == 200 and r.json()["turns"] == [] for r in responses)
    finally:
        stop_server(server)
