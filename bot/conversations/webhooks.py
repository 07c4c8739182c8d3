"""Outbound webhook for external ticket systems: one consumer of the outbox.

Handoff and callback events are POSTed as JSON signed with HMAC-SHA256
(``X-Hotline-Signature: sha256=<hex>``); ``X-Hotline-Delivery`` is stable across
retries so receivers can drop duplicates (delivery is at least once). Payloads
carry no raw external ids or phone numbers: users are pseudonyms, phones masked.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from typing import Any

import httpx

from bot.config import WebhookSettings
from bot.conversations.events import HANDOFF_EVENTS, CallbackDone, CallbackRequested, Event
from bot.conversations.outbox import Delivery, Outcome
from bot.models import utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hotline-Signature"
WEBHOOK_EVENTS = (*HANDOFF_EVENTS, CallbackRequested, CallbackDone)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers (and tests): constant-time check of ``X-Hotline-Signature``."""
    return header is not None and hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "replace"))


class WebhookConsumer:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, client: httpx.Client | None = None):
        if not settings.url:
            raise ValueError("webhook.url is not set")
        if not settings.secret:
            log.warning("HOTLINE_WEBHOOK__SECRET is not set: webhook events are sent unsigned")
        self.settings = settings
        self.client = client or httpx.Client(timeout=settings.timeout)

    def deliveries(self, event: Event) -> list[Delivery]:
        if not isinstance(event, WEBHOOK_EVENTS):
            return []
        delivery_id = uuid.uuid4().hex
        payload = {"delivery_id": delivery_id, "event": event.type, "occurred_at": utcnow().isoformat() + "Z",
                   "conversation_id": event.conversation_id} | event.payload()
        return [Delivery(key=f"webhook:{delivery_id}", payload=payload)]

    def deliver(self, payload: dict[str, Any]) -> Outcome:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hotline-Event": payload["event"],
                   "X-Hotline-Delivery": payload["delivery_id"], "User-Agent": "hotline-bot-webhook/2"}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = sign(self.settings.secret, body)
        try:
            response = self.client.post(self.settings.url or "", content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome.retry(f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return Outcome.done()
        return Outcome.retry(f"HTTP {response.status_code}")

    def close(self) -> None:
        self.client.close()
