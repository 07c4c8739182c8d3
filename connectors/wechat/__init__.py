"""WeChat channel: Official Accounts and mini-program customer service.

``init_wechat(app)`` wires it into the app made by ``connectors.app.create_app``:
tables, the blueprint (``/wechat/<account>``), the send-API outbox worker and
the ``wechat`` sender for agent replies. ``window_status`` tells the agent
console whether WeChat will still accept a message for a user.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from connectors.delivery import register_sender, register_status
from connectors.wechat import models, render  # noqa: F401  (models registers the tables on bot.store.Base)
from connectors.wechat.client import WeChatClient
from connectors.wechat.config import WeChatAccount, WeChatSettings
from connectors.wechat.crypto import WeChatCrypto
from connectors.wechat.outbox import Outbox, OutboxWorker, enqueue
from connectors.wechat.service import WeChatService
from connectors.wechat.users import find_by_conversation, window_status, window_status_for_conversation
from connectors.wechat.views import wechat_blueprint

__all__ = ["init_wechat", "wechat_blueprint", "window_status", "window_status_for_conversation",
           "WeChatSettings", "WeChatDeliveryError"]

log = logging.getLogger(__name__)


class WeChatDeliveryError(LookupError):
    """An agent reply for a WeChat conversation we cannot map to an account and openid."""


@dataclass
class WeChatRuntime:
    """Everything the channel holds per app (``app.extensions["hotline_wechat"]``)."""

    settings: WeChatSettings
    service: WeChatService
    outbox: Outbox
    worker: OutboxWorker
    clients: dict[str, WeChatClient]
    executor: ThreadPoolExecutor
    cryptos: dict[str, WeChatCrypto] = field(default_factory=dict)

    def crypto(self, account_name: str) -> WeChatCrypto | None:
        return self.cryptos.get(account_name)

    def close(self) -> None:
        self.worker.stop()
        self.executor.shutdown(wait=True)
        for client in self.clients.values():
            client.close()


def _crypto(account: WeChatAccount) -> WeChatCrypto | None:
    if not account.encoding_aes_key:
        return None
    return WeChatCrypto(account.token, account.encoding_aes_key, account.app_id, account.previous_encoding_aes_key)


def init_wechat(app: Flask, settings: WeChatSettings | None = None) -> WeChatRuntime:
    settings = settings or WeChatSettings()
    bot = app.extensions["hotline_bot"]
    # No create_schema here: the store creates the wechat_* tables (imported above)
    # on its next transaction, which also works when the database is down at start.
    clients = {a.name: WeChatClient(a, settings.api_base, bot.store, timeout=settings.http_timeout)
               for a in settings.accounts}
    outbox = Outbox(bot.store, clients, settings.window_hours, settings.window_messages, settings.outbox_max_backoff)
    worker = OutboxWorker(outbox, settings.outbox_interval)
    executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="wechat-turn")
    runtime = WeChatRuntime(
        settings=settings, service=WeChatService(bot, settings, executor, worker.wake), outbox=outbox,
        worker=worker, clients=clients, executor=executor,
        cryptos={a.name: c for a in settings.accounts if (c := _crypto(a)) is not None})
    app.extensions["hotline_wechat"] = runtime
    app.register_blueprint(wechat_blueprint)
    register_sender(app, "wechat", send_agent_reply)
    register_status(app, "wechat", lambda _app, conversation_id: window_status_for_conversation(conversation_id))
    if settings.accounts and settings.outbox_worker:
        worker.start()
    log.info("wechat: %d account(s) configured", len(settings.accounts))
    return runtime


def send_agent_reply(app: Flask, conversation: dict[str, Any], turn: dict[str, Any]) -> None:
    """The ``wechat`` sender: queue an agent's turn for the customer-service send API."""
    runtime: WeChatRuntime = app.extensions["hotline_wechat"]
    store = app.extensions["hotline_bot"].store
    found = find_by_conversation(store, conversation["id"])
    if found is None and len(runtime.settings.accounts) == 1 and conversation.get("user_id"):
        found = (runtime.settings.accounts[0].name, conversation["user_id"])
    if found is None:
        raise WeChatDeliveryError(f"no WeChat user for conversation {conversation['id']!r}")
    text = str(turn.get("text") or "").strip()
    if not text:
        return
    for i, piece in enumerate(render.split(text, runtime.settings.max_reply_bytes)):
        ref = f"turn:{turn['id']}:{i}" if turn.get("id") is not None else None
        enqueue(store, found[0], found[1], piece, "agent", ref=ref)
    runtime.worker.wake()
