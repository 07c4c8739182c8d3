"""WeChat channel: Official Accounts and mini-program customer service.

Input: ``/wechat/<account>`` (signature, decryption, parsing; ``views.py``) and the
message pipeline (``service.py``). Output: the WeChat sender, one consumer of the
outbox (``sender.py``). ``Windows`` tells the agent console whether WeChat will
still accept a message for a user.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from flask import Flask

from bot.config import WeChatAccount, WeChatSettings
from bot.services import Services
from connectors.wechat.client import WeChatClient
from connectors.wechat.crypto import WeChatCrypto
from connectors.wechat.sender import WeChatSender
from connectors.wechat.service import WeChatChannel
from connectors.wechat.users import Windows
from connectors.wechat.views import wechat_blueprint

__all__ = ["WeChatRuntime", "init_wechat", "wechat_blueprint"]

log = logging.getLogger(__name__)
EXTRA = "wechat"


@dataclass
class WeChatRuntime:
    """Everything the channel holds per Services (``services.extras["wechat"]``)."""

    settings: WeChatSettings
    channel: WeChatChannel
    sender: WeChatSender
    windows: Windows
    cryptos: dict[str, WeChatCrypto] = field(default_factory=dict)

    def crypto(self, account_name: str) -> WeChatCrypto | None:
        return self.cryptos.get(account_name)

    def start(self) -> None:
        if self.settings.accounts:
            self.channel.start()

    def close(self) -> None:
        self.channel.close()


def _crypto(account: WeChatAccount) -> WeChatCrypto | None:
    if not account.encoding_aes_key:
        return None
    return WeChatCrypto(account.token, account.encoding_aes_key, account.app_id, account.previous_encoding_aes_key)


def init_wechat(app: Flask, services: Services) -> WeChatRuntime:
    runtime = services.extras.get(EXTRA)
    if runtime is None:
        settings = services.settings.wechat
        clients = {a.name: WeChatClient(a, settings.api_base, services.db, timeout=settings.http_timeout)
                   for a in settings.accounts}
        windows = Windows(services.db, settings.window_hours, settings.window_messages, services.clock)
        sender = WeChatSender(services.db, clients, windows, settings.max_reply_bytes, services.clock)
        if settings.accounts:
            services.add_consumer(sender)
        executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wechat-turn")
        runtime = WeChatRuntime(settings=settings, channel=WeChatChannel(services, settings, executor),
                                sender=sender, windows=windows,
                                cryptos={a.name: c for a in settings.accounts if (c := _crypto(a)) is not None})
        services.extras[EXTRA] = runtime
        services.extras.setdefault("channel_status", {})["wechat"] = windows.for_conversation
        if services.started:
            runtime.start()
        log.info("wechat: %d account(s) configured", len(settings.accounts))
    app.register_blueprint(wechat_blueprint)
    return runtime
