"""What flows in and out of the engine; no HTTP, no Flask."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_USER_ID_CHARS = 160
MAX_CLIENT_MESSAGE_ID_CHARS = 64
CHANNELS = frozenset({"web", "api", "rasa", "wechat", "cli"})


class InvalidMessage(ValueError):
    """The message cannot be handled as sent; ``field`` names the culprit."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


def _clean(value: str, name: str) -> None:
    """Text that every database can store: no NUL, no lone surrogates."""
    if "\x00" in value:
        raise InvalidMessage(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(name, "must be valid Unicode (no lone surrogates)") from None


@dataclass(frozen=True)
class Message:
    """One citizen message. ``channel`` and ``user_id`` come from the connector that
    verified them (a WeChat signature, the widget's own id, a Rasa sender), never
    from what a public client claims."""

    user_id: str
    text: str
    channel: str = "api"
    conversation_id: str | None = None
    new_conversation: bool = False
    client_message_id: str | None = None  # idempotency: a retry of the same message is answered, not stored twice
    language: str | None = None  # the language the client shows (button payloads carry none)

    def validate(self, max_chars: int) -> None:
        if not isinstance(self.user_id, str) or not self.user_id.strip():
            raise InvalidMessage("user_id", "must be a non-empty string")
        if len(self.user_id) > MAX_USER_ID_CHARS:
            raise InvalidMessage("user_id", f"must be at most {MAX_USER_ID_CHARS} characters")
        _clean(self.user_id, "user_id")
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidMessage("text", "must be a non-empty string")
        if len(self.text) > max_chars:
            raise InvalidMessage("text", f"must be at most {max_chars} characters (got {len(self.text)})")
        _clean(self.text, "text")
        if self.channel not in CHANNELS:
            raise InvalidMessage("channel", f"must be one of {sorted(CHANNELS)}")
        if self.conversation_id is not None and (
                not isinstance(self.conversation_id, str) or not self.conversation_id.isalnum()
                or len(self.conversation_id) > 64):
            raise InvalidMessage("conversation_id", "must be an id this server gave out")
        if self.client_message_id is not None:
            if not isinstance(self.client_message_id, str) or not self.client_message_id.strip() \
                    or len(self.client_message_id) > MAX_CLIENT_MESSAGE_ID_CHARS:
                raise InvalidMessage("client_message_id",
                                     f"must be a non-empty string of at most {MAX_CLIENT_MESSAGE_ID_CHARS} characters")
            _clean(self.client_message_id, "client_message_id")
        if self.language not in (None, "zh", "en"):
            raise InvalidMessage("language", "must be 'zh' or 'en'")


@dataclass(frozen=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True)
class ReplyMessage:
    text: str
    buttons: list[Button] = field(default_factory=list)
    source: dict[str, str] | None = None
    updated: str | None = None
    entry_id: str | None = None
    kind: str | None = None  # "emergency" for the pinned red panel; None for ordinary messages

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.buttons:
            out["buttons"] = [asdict(b) for b in self.buttons]
        if self.source:
            out["source"] = self.source
        if self.updated:
            out["updated"] = self.updated
        if self.entry_id:
            out["entry_id"] = self.entry_id
        if self.kind:
            out["kind"] = self.kind
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], text: str) -> "ReplyMessage":
        return cls(text=text, buttons=[Button(**b) for b in data.get("buttons") or []], source=data.get("source"),
                   updated=data.get("updated"), entry_id=data.get("entry_id"), kind=data.get("kind"))


@dataclass(frozen=True)
class HandoffInfo:
    id: int
    reason: str
    priority: int
    status: str  # waiting | claimed | closed
    queue_position: int | None
    region: str | None = None


@dataclass(frozen=True)
class Reply:
    conversation_id: str
    replies: list[ReplyMessage]
    intent: str
    confidence: float
    language: str
    entry_id: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    handoff: HandoffInfo | None = None
    status: str = "bot"
    turn_ids: list[int] = field(default_factory=list)
    replayed: bool = False  # a retry of a message already answered (same client_message_id)
    handoff_opened: bool = False  # this message opened a ticket (per-IP handoff budget)
    region: str | None = None  # the citizen's region as the bot understood it (for the agent's view)
    action: str | None = None  # what the bot did (answer, did_you_mean, handoff, ...): for /metrics, not the API

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "replies": [r.to_dict() for r in self.replies],
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "language": self.language,
            "entry_id": self.entry_id,
            "status": self.status,
            "handoff": asdict(self.handoff) if self.handoff else None,
            "replayed": self.replayed,
            "region": self.region,
        }
