"""The one status of a conversation, and the only transitions it may take.

    bot ──handoff──▶ waiting ──claim──▶ claimed ──resolve──▶ resolved
     ▲                 │  ▲               │  └──hand_back──▶ returned
     │                 │  └───release─────┘  (transfer: claimed → claimed, another agent)
     │                 └──abandon──▶ abandoned ◀──abandon── claimed (the citizen started a new conversation)
     └──────────── resume (the citizen writes again) ◀── resolved | returned | abandoned

Modelled on Chatwoot's single conversation status: tickets (``handoffs``) record
each episode with a person, but never carry a status of their own.
"""
from __future__ import annotations

from enum import StrEnum


class ConversationStatus(StrEnum):
    BOT = "bot"
    WAITING = "waiting"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    RETURNED = "returned"
    ABANDONED = "abandoned"


S = ConversationStatus
WITH_PERSON = frozenset({S.WAITING, S.CLAIMED})  # the bot records, never answers over a person
ENDED = frozenset({S.RESOLVED, S.RETURNED, S.ABANDONED})

TRANSITIONS: dict[str, dict[ConversationStatus, ConversationStatus]] = {
    "handoff": {S.BOT: S.WAITING},
    "claim": {S.WAITING: S.CLAIMED},
    "transfer": {S.CLAIMED: S.CLAIMED},
    "release": {S.CLAIMED: S.WAITING},
    "resolve": {S.CLAIMED: S.RESOLVED},
    "hand_back": {S.CLAIMED: S.RETURNED},
    "abandon": {S.WAITING: S.ABANDONED, S.CLAIMED: S.ABANDONED},
    "resume": {S.RESOLVED: S.BOT, S.RETURNED: S.BOT, S.ABANDONED: S.BOT},
}


class InvalidTransition(ValueError):
    """An action the conversation's current status does not allow (a 409 to HTTP clients)."""

    def __init__(self, action: str, status: str):
        super().__init__(f"cannot {action.replace('_', ' ')} a conversation that is {status}")
        self.action = action
        self.status = status


def transition(status: str, action: str) -> ConversationStatus:
    try:
        return TRANSITIONS[action][ConversationStatus(status)]
    except (KeyError, ValueError):
        raise InvalidTransition(action, status) from None
