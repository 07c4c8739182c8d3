"""Domain events: every change of a conversation announces itself, in the same
transaction, to the outbox (``outbox_events``); consumers (the notifier that wakes
long polls, the webhook sender, the WeChat sender) take it from there.

Names follow Rasa's tracker events in spirit: past tense, one fact each.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"
    queue: ClassVar[bool] = False  # does the handoff queue (what agents see) move?
    conversation_id: str | None

    def payload(self) -> dict[str, Any]:
        """What is stored and sent on: no raw external user ids."""
        data = asdict(self)
        data.pop("conversation_id", None)
        data.pop("user_id", None)
        return data


@dataclass(frozen=True)
class TurnAdded(Event):
    type: ClassVar[str] = "turn.added"
    turn_id: int
    role: str
    channel: str
    text: str
    user_id: str = ""  # the channel's external user, for push consumers only (never stored in the event)
    # True when the turn must be pushed to the citizen's channel (agent messages, desk
    # notices); answers to the citizen's own message go back with that message.
    push: bool = False


@dataclass(frozen=True)
class HandoffOpened(Event):
    type: ClassVar[str] = "handoff.opened"
    queue: ClassVar[bool] = True
    handoff: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HandoffEscalated(Event):
    """A red flag while the citizen was already waiting or talking to an agent."""

    type: ClassVar[str] = "handoff.escalated"
    queue: ClassVar[bool] = True
    handoff: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HandoffClaimed(Event):
    type: ClassVar[str] = "handoff.claimed"
    queue: ClassVar[bool] = True
    handoff: dict[str, Any] = field(default_factory=dict)
    agent: str = ""


@dataclass(frozen=True)
class HandoffTransferred(Event):
    type: ClassVar[str] = "handoff.transferred"
    queue: ClassVar[bool] = True
    handoff: dict[str, Any] = field(default_factory=dict)
    agent: str = ""
    to_agent: str | None = None  # None: back to the queue


@dataclass(frozen=True)
class HandoffClosed(Event):
    type: ClassVar[str] = "handoff.closed"
    queue: ClassVar[bool] = True
    handoff: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # resolved | returned | abandoned
    agent: str | None = None


@dataclass(frozen=True)
class CallbackRequested(Event):
    type: ClassVar[str] = "callback.requested"
    queue: ClassVar[bool] = True
    callback: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallbackDone(Event):
    type: ClassVar[str] = "callback.done"
    queue: ClassVar[bool] = True
    callback: dict[str, Any] = field(default_factory=dict)
    agent: str = ""


@dataclass(frozen=True)
class DutyChanged(Event):
    """Agents on duty changed: waiting citizens' banners and consoles re-read."""

    type: ClassVar[str] = "duty.changed"
    queue: ClassVar[bool] = True
    agent: str = ""
    on_duty: bool = False


@dataclass(frozen=True)
class KnowledgePublished(Event):
    type: ClassVar[str] = "kb.published"
    version: str = ""


HANDOFF_EVENTS = (HandoffOpened, HandoffEscalated, HandoffClaimed, HandoffTransferred, HandoffClosed)
