"""Production server: waitress (a real multi-threaded WSGI server), one process.

The index and the encoder load once, before the first request is accepted;
request threads share them read-only.
"""
from __future__ import annotations

import logging
import time

from threadpoolctl import threadpool_limits
from waitress import serve as waitress_serve

from bot.config import Settings
from connectors.app import create_app

log = logging.getLogger(__name__)


def serve(settings: Settings, host: str, port: int) -> None:
    started = time.perf_counter()
    # One BLAS thread per request thread: concurrent requests each encode on their own thread,
    # and a threaded BLAS under many callers spends its time fighting over cores.
    threadpool_limits(limits=settings.encoder_threads, user_api="blas")
    app = create_app(settings)
    bot = app.extensions["hotline_bot"]
    if settings.api_token is None:
        log.warning("HOTLINE_API_TOKEN is not set: /api/v1 transcripts and tickets are readable without a token")
    log.info("hotline-bot ready in %.1fs: %d entries, KB %s, encoder %s; listening on http://%s:%d",
             time.perf_counter() - started, len(bot.kb.entries), bot.kb.version, settings.encoder, host, port)
    waitress_serve(app, host=host, port=port, threads=settings.server_threads,
                   connection_limit=max(100, settings.server_threads * 8), channel_timeout=60, ident="hotline-bot")
