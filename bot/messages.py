"""What flows in and out of the engine; no HTTP, no Flask."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_USER_ID_CHARS = 128
MAX_CHANNEL_CHARS = 32


class InvalidMessage(ValueError):
    """The message cannot be handled as sent; ``field`` names the culprit."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Message:
    user_id: str
    text: str
    channel: str = "web"
    conversation_id: str | None = None

    def validate(self, max_chars: int) -> None:
        if not isinstance(self.user_id, str) or not self.user_id.strip():
            raise InvalidMessage("user_id", "must be a non-empty string")
        if len(self.user_id) > MAX_USER_ID_CHARS:
            raise InvalidMessage("user_id", f"must be at most {MAX_USER_ID_CHARS} characters")
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidMessage("text", "must be a non-empty string")
        if len(self.text) > max_chars:
            raise InvalidMessage("text", f"must be at most {max_chars} characters (got {len(self.text)})")
        if not isinstance(self.channel, str) or not self.channel.strip() or len(self.channel) > MAX_CHANNEL_CHARS:
            raise InvalidMessage("channel", f"must be a non-empty string of at most {MAX_CHANNEL_CHARS} characters")
        if self.conversation_id is not None and (
            not isinstance(self.conversation_id, str) or not self.conversation_id.strip()
            or len(self.conversation_id) > 64
        ):
            raise InvalidMessage("conversation_id", "must be a non-empty string of at most 64 characters")


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
        return out


@dataclass(frozen=True)
class HandoffInfo:
    id: int
    reason: str
    priority: int
    status: str
    queue_position: int | None


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
    region: str | None = None  # the citizen's region as the bot understood it (for the agent's view)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "replies": [r.to_dict() for r in self.replies],
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "language": self.language,
            "entry_id": self.entry_id,
            "handoff": asdict(self.handoff) if self.handoff else None,
            "region": self.region,
        }
