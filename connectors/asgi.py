"""The asynchronous front: Flask behind a2wsgi, with long polls parked on the event loop.

Every request runs the Flask app on a bounded thread pool (``server.threads``).
A long poll (``GET ...?wait=N``) that has nothing new gets back an
``X-Hotline-Wait`` header from its view (see ``connectors/waits.py``); the front
then frees the thread and awaits the notifier — one coroutine per waiting
citizen, no thread — and asks the view again when something changed, until the
wait is over or the client goes away.

Why: with one thread per waiting citizen, 40 waiting citizens pushed everyone
else's message latency to p50 16.8 s and ``/healthz`` to 16.8 s (32 threads).

A parked poll costs one read of the view when it starts and one per change, nothing
more: no periodic safety re-read (2,000 waiting citizens re-read every 5 s were 400
view calls a second, and pushed other citizens' p99 to 2.7 s; bench/waiting.py), and
when the wait runs out unchanged the last read is the answer. What drifts without an
event (agents' presence, the desk's hours) is at most one poll old: the widget polls
again at once, and that poll starts with a fresh read.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any
from urllib.parse import parse_qs

from a2wsgi import WSGIMiddleware

from bot.conversations.notify import Notifier
from connectors.metrics import parked_polls, poll_kind
from connectors.waits import ASYNC_HEADER, WAIT_HEADER

log = logging.getLogger(__name__)

_ASYNC = ASYNC_HEADER.lower().encode()
_WAIT = WAIT_HEADER.lower().encode()
WAIT_JITTER = 0.2


class LongPollFront:
    def __init__(self, wsgi_app, notifier: Notifier, threads: int = 8, max_wait: float = 60.0):
        self.wsgi = WSGIMiddleware(wsgi_app, workers=threads)
        # Long polls read their view on a small pool of their own: when a herd of polls comes back at
        # once (a restart, a queue move, deadlines close together), their reads queue here, not in
        # front of citizens' messages and /healthz.
        self.poll_reads = WSGIMiddleware(wsgi_app, workers=max(1, threads // 4))
        self.notifier = notifier
        self.max_wait = max_wait

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.wsgi(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != _ASYNC]  # clients cannot set it
        wait = self._requested_wait(scope)
        if wait is None:
            await self.wsgi(dict(scope, headers=headers), receive, send)
            return
        await self._long_poll(dict(scope, headers=headers + [(_ASYNC, b"1")]), receive, send, wait)

    def _requested_wait(self, scope) -> float | None:
        if scope.get("method") != "GET" or b"wait=" not in scope.get("query_string", b""):
            return None
        values = parse_qs(scope["query_string"].decode("latin-1")).get("wait")
        try:
            wait = float(values[0]) if values else 0.0
        except ValueError:
            return None  # the view answers 400
        return min(wait, self.max_wait) if math.isfinite(wait) and wait > 0 else None

    async def _long_poll(self, scope, receive, send, wait: float) -> None:
        # Up to a fifth shorter than asked: polls parked together (a restart, a queue move) come back
        # spread out instead of all re-polling in the same instant.
        deadline = time.monotonic() + wait * random.uniform(1 - WAIT_JITTER, 1)
        disconnected = asyncio.ensure_future(self._disconnect(receive))
        parked = parked_polls(poll_kind(scope.get("path", "")))  # /metrics: a client that aborts is gone at once
        parked.inc()
        try:
            while True:
                messages = await self._call(scope)
                start = messages[0] if messages and messages[0]["type"] == "http.response.start" else None
                header = next((v for k, v in start["headers"] if k == _WAIT), None) if start else None
                remaining = deadline - time.monotonic()
                if header is None or remaining <= 0 or disconnected.done():
                    break
                key, version, queue = header.decode().split()
                changed = asyncio.ensure_future(self.notifier.wait_async(
                    "" if key == "-" else key, (int(version), int(queue)), remaining))
                await asyncio.wait({changed, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if disconnected.done():
                    changed.cancel()
                    return  # nobody to answer
                if not changed.result():
                    break  # the wait ran out with nothing changed: the last read is the answer
            if start is not None:
                start["headers"] = [(k, v) for k, v in start["headers"] if k != _WAIT]
            for message in messages:
                await send(message)
        finally:
            parked.dec()
            disconnected.cancel()

    async def _call(self, scope) -> list[dict[str, Any]]:
        """Run the Flask view once and keep its response (long-poll bodies are small)."""
        messages: list[dict[str, Any]] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            messages.append(message)

        await self.poll_reads(scope, receive, send)
        return messages

    @staticmethod
    async def _disconnect(receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    @staticmethod
    async def _lifespan(receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_asgi(app, services) -> LongPollFront:
    return LongPollFront(app, services.notifier, services.settings.server.threads,
                         max_wait=services.settings.web.long_poll_seconds)
