"""Wires the agent desk and the webhook worker into the Flask app (once per app)."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from flask import Flask

from bot import desk_models, webhooks  # noqa: F401  (registers their tables on Base)
from bot.desk import AgentDesk, DeskError
from bot.store import StoreUnavailable
from connectors.errors import error_response

log = logging.getLogger(__name__)


def install_desk(app: Flask) -> AgentDesk:
    """The app's AgentDesk; first call creates the new tables and starts the webhook worker."""
    desk = app.extensions.get("hotline_desk")
    if desk is not None:
        return desk
    bot = app.extensions["hotline_bot"]
    try:
        bot.store.create_schema()  # idempotent: adds agents, feedback, callbacks, outbox
    except StoreUnavailable as exc:  # the store retries lazily on the first transaction
        log.error("desk tables not created yet: %s", exc)
    desk = AgentDesk(bot.store, bot.kb)
    app.extensions["hotline_desk"] = desk
    app.register_error_handler(DeskError, lambda exc: error_response(exc.status, exc.message, exc.field))
    hook_settings = webhooks.WebhookSettings()
    if hook_settings.enabled:
        webhooks.enable(bot.store)
        worker = webhooks.WebhookWorker(bot.store, hook_settings)
        worker.start()
        app.extensions["hotline_webhooks"] = worker
        log.info("webhook events go to %s", hook_settings.url)
    return desk


def session_secret(app: Flask) -> str:
    """``HOTLINE_SECRET_KEY``, else a random key kept in the data dir so restarts keep agents logged in."""
    configured = os.environ.get("HOTLINE_SECRET_KEY")
    if configured:
        return configured
    settings = app.extensions.get("hotline_settings")
    if settings is None:
        return secrets.token_hex(32)
    path = Path(settings.data_dir) / "session.key"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process wrote it first
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
        return path.read_text().strip()
    except OSError as exc:  # read-only data dir: sessions just end at restart
        log.warning("cannot keep the session key in %s (%s); using a per-process key", path, exc)
        return secrets.token_hex(32)
