"""Long polls that park no request thread.

A view answers at once; when the client asked to wait and nothing is new yet,
it says what to wait for in ``X-Hotline-Wait: <key> <version> <queue version>``
(versions read *before* the state, so no change slips between). The
asynchronous front (``connectors/asgi.py``) then parks the connection on the
event loop until the notifier reports a change, and asks the view again. With no
front (Flask's test client, a plain WSGI server) the view waits itself, bounded.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import request

from connectors.context import services

ASYNC_HEADER = "X-Hotline-Async-Front"  # set by the front (client copies are stripped)
WAIT_HEADER = "X-Hotline-Wait"

T = TypeVar("T")


def long_poll(key: str, read: Callable[[], T], ready: Callable[[T], bool],
              wait: float) -> tuple[T, dict[str, str]]:
    notifier = services().notifier
    if wait <= 0:
        return read(), {}
    if request.headers.get(ASYNC_HEADER) == "1":
        seen = notifier.version(key)
        result = read()
        if ready(result):
            return result, {}
        return result, {WAIT_HEADER: f"{key or '-'} {seen[0]} {seen[1]}"}
    return notifier.poll(key, read, ready, wait), {}
