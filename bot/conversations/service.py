"""The conversation service: the only writer of conversations, turns and tickets.

A citizen's message runs in ``service.message(...)``: one transaction that finds
(or creates) the conversation from the channel's verified identity, locks it,
and gives the engine a ``MessageScope`` to add turns and open or escalate a
handoff; on leaving the block the turns are written in one batch, the
conversation row once, and every change is announced as an event to the outbox
(same transaction). Agents' actions (claim, reply, note, transfer, resolve, hand
back) are methods here too, each one transaction and one legal status transition.

The hot path is SQLAlchemy Core: a message costs a locked SELECT, one batched
INSERT of turns, one UPDATE of the conversation and one batched INSERT of events,
with no ``SELECT max(seq)`` (the row keeps ``turn_count``).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.config import LimitSettings
from bot.conversations.events import (
    Event,
    HandoffClaimed,
    HandoffClosed,
    HandoffEscalated,
    HandoffOpened,
    HandoffTransferred,
    TurnAdded,
)
from bot.conversations.outbox import Outbox
from bot.conversations.privacy import Vault
from bot.conversations.status import WITH_PERSON, ConversationStatus, InvalidTransition, transition
from bot.db import Database, rowcount
from bot.errors import ConversationError as ConversationError  # re-exported
from bot.errors import StoreUnavailable
from bot.messages import HandoffInfo, Message
from bot.models import Agent, Conversation, Handoff, Identity, Turn, iso, utcnow

DESK_ROLES = ("agent", "supervisor", "admin")  # who may hold a ticket (see staff.RIGHTS)
PRIORITY_URGENT = 0
PRIORITY_NORMAL = 1

S = ConversationStatus
C = Conversation.__table__.c
T = Turn.__table__.c
H = Handoff.__table__.c

# The per-message statements, built once: SQLAlchemy then reuses their compiled form and cache
# key, and they run on the connection (Core), not through the ORM's bulk machinery. Measured
# in process: the conversation half of a message went from ~10.9 to ~N ms of CPU (see README).
_MUTABLE = [c for c in Conversation.__table__.columns if c.name != "id"]
_MUTABLE_NAMES = tuple(c.name for c in _MUTABLE)
_STATE_NAMES = tuple(n for n in _MUTABLE_NAMES if n != "updated_at")
_LOCK = select(Conversation.__table__).where(C.id == bindparam("cid")).with_for_update()
_CURRENT = select(Identity.conversation_id).where(Identity.channel == bindparam("channel"),
                                                  Identity.external_id == bindparam("user"))
_INSERT_TURNS = insert(cast(Table, Turn.__table__)).returning(T.id, T.seq, sort_by_parameter_order=True)
_UPDATE_CONVERSATION = update(cast(Table, Conversation.__table__)).where(C.id == bindparam("_cid")).values(
    {c.name: bindparam(f"_{c.name}") for c in _MUTABLE})

log = logging.getLogger(__name__)


@dataclass
class ConversationRecord:
    """The locked conversation row, changed in memory and written back once."""

    id: str
    channel: str
    user_id: str
    status: str
    language: str
    script: str | None
    region: str | None
    pending: dict[str, Any] | None
    failures: int
    turn_count: int
    last_candidates: list[Any]
    handoff_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> "ConversationRecord":
        data = row._mapping
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass
class StoredTurn:
    id: int
    seq: int
    role: str
    text: str
    created_at: dt.datetime
    intent: str | None = None
    entry_id: str | None = None
    score: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "seq": self.seq, "role": self.role, "text": self.text,
                               "time": iso(self.created_at)}
        if self.role == "bot":
            out.update(intent=self.intent, entry_id=self.entry_id, score=self.score)
        if self.payload:
            out["payload"] = self.payload
        return out


def handoff_snapshot(row: Row[Any], vault: Vault | None = None) -> dict[str, Any]:
    """A ticket as events, webhooks and agents see it: no raw external ids."""
    data = row._mapping if hasattr(row, "_mapping") else {c: getattr(row, c) for c in H.keys()}
    user = data["user_id"]
    return {"id": data["id"], "conversation_id": data["conversation_id"], "reason": data["reason"],
            "priority": data["priority"], "channel": data["channel"],
            "user": vault.pseudonym(f"{data['channel']}:{user}") if vault else None,
            "language": data["language"], "region": data["region"], "question": data["question"],
            "candidates": list(data["candidates"] or []), "kb_version": data["kb_version"],
            "created_at": iso(data["created_at"]), "claimed_by": data["claimed_by"],
            "claimed_at": iso(data["claimed_at"]), "closed_at": iso(data["closed_at"]),
            "outcome": data["outcome"]}


class MessageScope:
    """What the engine may do with the conversation while handling one message."""

    def __init__(self, service: "ConversationService", session: Session, conversation: ConversationRecord,
                 now: dt.datetime):
        self.service = service
        self.session = session
        self.conversation = conversation
        self.now = now
        self.events: list[Event] = []
        self._flushed: tuple[str, ...] | None = None
        self._turns: list[dict[str, Any]] = []
        self._pushes: list[bool] = []
        self.turns: list[StoredTurn] = []
        self.user_turn_text: str | None = None

    # -- turns ---------------------------------------------------------------------------

    def add_turn(self, role: str, text: str, *, intent: str | None = None, entry_id: str | None = None,
                 score: float | None = None, payload: dict[str, Any] | None = None,
                 client_message_id: str | None = None, push: bool = False) -> None:
        conv = self.conversation
        conv.turn_count += 1
        stored, encrypted = self.service.vault.protect(text) if role in ("user", "agent", "note") else (text, None)
        if role == "user":
            self.user_turn_text = stored
        self._turns.append({"conversation_id": conv.id, "seq": conv.turn_count, "role": role, "text": stored,
                            "text_enc": encrypted, "created_at": self.now, "intent": intent,
                            "entry_id": entry_id, "score": score, "payload": payload or {},
                            "client_message_id": client_message_id})
        self._pushes.append(push)

    def replay(self, client_message_id: str) -> list[StoredTurn] | None:
        """The turns stored for this client message id (a retry after a timeout), or None."""
        conv = self.conversation
        user = self.session.execute(select(T.id, T.seq).where(
            T.conversation_id == conv.id, T.client_message_id == client_message_id)).first()
        if user is None:
            return None
        rows = self.session.execute(
            select(Turn.__table__).where(T.conversation_id == conv.id, T.seq > user.seq, T.role == "bot")
            .order_by(T.seq)).all()
        return [_stored(r) for r in rows if (r.payload or {}).get("reply_to_seq") == user.seq]

    # -- handoffs --------------------------------------------------------------------------

    def handoff(self) -> Row[Any] | None:
        """The open ticket's row, if any."""
        if self.conversation.handoff_id is None:
            return None
        return self.session.execute(select(Handoff.__table__).where(H.id == self.conversation.handoff_id)).first()

    def _open_ticket(self) -> Row[Any]:
        row = self.handoff()
        if row is None:
            raise RuntimeError(f"conversation {self.conversation.id} has no open ticket")
        return row

    def open_handoff(self, reason: str, *, urgent: bool, candidates: list[dict[str, Any]],
                     kb_version: str, skip_current: bool = False) -> HandoffInfo | None:
        """bot → waiting with a new ticket; None when the citizen already has one open elsewhere."""
        conv = self.conversation
        if conv.status in WITH_PERSON:
            raise InvalidTransition("handoff", conv.status)
        if self.service.open_handoffs_elsewhere(self.session, conv) >= self.service.limits.open_handoffs_per_citizen:
            return None
        question = self._question(skip_current)
        values = {"conversation_id": conv.id, "reason": reason,
                  "priority": PRIORITY_URGENT if urgent else PRIORITY_NORMAL, "channel": conv.channel,
                  "user_id": conv.user_id, "language": conv.language, "region": conv.region,
                  "question": (question or "")[:500], "candidates": candidates, "kb_version": kb_version,
                  "created_at": self.now}
        handoff_id: int = self.session.execute(insert(Handoff).values(**values).returning(H.id)).scalar_one()
        conv.status = transition(conv.status, "handoff")
        conv.handoff_id = handoff_id
        row = self._open_ticket()
        self.events.append(HandoffOpened(conv.id, handoff=handoff_snapshot(row, self.service.vault)))
        return self.service.handoff_info(self.session, row)

    def escalate(self) -> HandoffInfo:
        """A red flag while a person owns the conversation: urgent, and the agents are alerted again."""
        row = self.handoff()
        if row is None:
            raise InvalidTransition("escalate", self.conversation.status)
        if row.priority != PRIORITY_URGENT:
            self.session.execute(update(Handoff).where(H.id == row.id).values(priority=PRIORITY_URGENT))
            row = self._open_ticket()
        self.events.append(HandoffEscalated(self.conversation.id, handoff=handoff_snapshot(row, self.service.vault)))
        return self.service.handoff_info(self.session, row)

    def handoff_info(self) -> HandoffInfo | None:
        row = self.handoff()
        return self.service.handoff_info(self.session, row) if row is not None else None

    def resume(self) -> None:
        """The citizen writes after a person closed the conversation: the bot takes over."""
        self.conversation.status = transition(self.conversation.status, "resume")

    def _question(self, skip_current: bool) -> str:
        """The citizen's last real question (not a button press, nor "转人工" itself)."""
        pending = [t["text"] for t in self._turns if t["role"] == "user"]
        current = pending[-1] if pending else ""
        if skip_current and pending:
            pending = pending[:-1]
        for text in reversed(pending):
            if not text.startswith("/"):
                return str(text)
        earlier = self.session.execute(
            select(T.text).where(T.conversation_id == self.conversation.id, T.role == "user",
                                 ~T.text.startswith("/")).order_by(T.seq.desc()).limit(1)).scalar()
        return str(earlier or ("" if current.startswith("/") else current))

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what changed: new turns in one batch, the conversation row once, the events."""
        conv = self.conversation
        state = tuple(repr(getattr(conv, name)) for name in _STATE_NAMES)  # repr: lists/dicts compare by value
        if not self._turns and not self.events and state == self._flushed:
            return  # nothing changed since the last flush (the scope flushes again on exit)
        connection = self.session.connection()
        if self._turns:
            rows = connection.execute(_INSERT_TURNS, self._turns).all()
            for row, values, push in zip(rows, self._turns, self._pushes):
                turn_id = int(row[0])
                stored = StoredTurn(turn_id, values["seq"], values["role"], values["text"], values["created_at"],
                                    values["intent"], values["entry_id"], values["score"], values["payload"])
                self.turns.append(stored)
                self.events.append(TurnAdded(conv.id, turn_id=turn_id, role=stored.role, channel=conv.channel,
                                             text=stored.text, user_id=conv.user_id, push=push))
            self._turns, self._pushes = [], []
        conv.updated_at = self.now
        values = {f"_{name}": getattr(conv, name) for name in _MUTABLE_NAMES}  # not asdict: it deep-copies
        values["_cid"] = conv.id
        connection.execute(_UPDATE_CONVERSATION, values)
        self._flushed = state
        self.service.outbox.record(self.session, self.events, self.now)
        self.events = []


def _stored(row: Row[Any]) -> StoredTurn:
    return StoredTurn(row.id, row.seq, row.role, row.text, row.created_at, row.intent, row.entry_id, row.score,
                      row.payload or {})


class ConversationService:
    def __init__(self, db: Database, outbox: Outbox, vault: Vault, limits: LimitSettings | None = None,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.outbox = outbox
        self.vault = vault
        self.limits = limits or LimitSettings()
        self.clock = clock

    # -- a citizen's message -------------------------------------------------------------------

    @contextmanager
    def message(self, message: Message, language: str) -> Iterator[MessageScope]:
        now = self.clock()
        with self.db.transaction() as session:
            conv = self._conversation_for(session, message, language, now)
            scope = MessageScope(self, session, conv, now)
            yield scope
            scope.flush()

    def _conversation_for(self, session: Session, message: Message, language: str,
                          now: dt.datetime) -> ConversationRecord:
        channel, user = message.channel, message.user_id
        if message.new_conversation and message.client_message_id:
            # A retry of a "new conversation" message whose answer was lost started another conversation (and
            # closed the first one's ticket as abandoned): the one it started is the user's current one, holding
            # this client message id, and the engine answers the retry from there (replay).
            current = session.connection().execute(_CURRENT, {"channel": channel, "user": user}).scalar()
            if current is not None and session.execute(select(T.id).where(
                    T.conversation_id == current, T.client_message_id == message.client_message_id)).first():
                conv = self._lock(session, current)
                if conv is not None:
                    return conv
        if message.conversation_id and not message.new_conversation:
            conv = self._lock(session, message.conversation_id)
            if conv is not None:
                if conv.channel != channel or conv.user_id != user:
                    raise ConversationError("forbidden", "conversation_id: belongs to another user",
                                            "conversation_id")
                return conv
            # unknown id (e.g. the database was reset): a fresh conversation; the client sees the new id
        if not message.new_conversation:
            current = session.connection().execute(_CURRENT, {"channel": channel, "user": user}).scalar()
            if current is not None:
                conv = self._lock(session, current)
                if conv is not None:
                    return conv
        return self._create(session, channel, user, language, now, replace=message.new_conversation)

    def _create(self, session: Session, channel: str, user: str, language: str, now: dt.datetime,
                replace: bool) -> ConversationRecord:
        conversation_id = uuid.uuid4().hex
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        upsert = dialect.insert(Identity).values(channel=channel, external_id=user, conversation_id=conversation_id,
                                                 created_at=now, updated_at=now)
        if replace:
            previous = session.execute(select(Identity.conversation_id).where(
                Identity.channel == channel, Identity.external_id == user)).scalar()
            if previous is not None:
                self._abandon_if_waiting(session, previous, now, with_agent=True)
            session.execute(upsert.on_conflict_do_update(
                index_elements=["channel", "external_id"],
                set_={"conversation_id": conversation_id, "updated_at": now}))
        else:
            # Two first messages at once: one identity row wins, the other joins its conversation.
            won = session.execute(upsert.on_conflict_do_nothing(index_elements=["channel", "external_id"])
                                  .returning(Identity.channel)).first()
            if won is None:
                existing = session.execute(select(Identity.conversation_id).where(
                    Identity.channel == channel, Identity.external_id == user)).scalar_one()
                conv = self._lock(session, existing)
                if conv is not None:
                    return conv
                session.execute(update(Identity).where(Identity.channel == channel, Identity.external_id == user)
                                .values(conversation_id=conversation_id, updated_at=now))
        session.execute(insert(Conversation).values(
            id=conversation_id, channel=channel, user_id=user, status=S.BOT.value, language=language,
            failures=0, turn_count=0, last_candidates=[], created_at=now, updated_at=now))
        created = self._lock(session, conversation_id)
        if created is None:
            raise RuntimeError(f"conversation {conversation_id} vanished inside its own transaction")
        return created

    @staticmethod
    def _lock(session: Session, conversation_id: str) -> ConversationRecord | None:
        row = session.connection().execute(_LOCK, {"cid": conversation_id}).first()
        return ConversationRecord.from_row(row) if row is not None else None

    def open_handoffs_elsewhere(self, session: Session, conv: ConversationRecord) -> int:
        return int(session.execute(select(func.count()).select_from(Conversation).where(
            C.channel == conv.channel, C.user_id == conv.user_id, C.id != conv.id,
            C.status.in_([s.value for s in WITH_PERSON]))).scalar() or 0)

    # -- tickets -------------------------------------------------------------------------------

    def queue_position(self, session: Session, row: Row[Any]) -> int | None:
        """1-based place among waiting tickets (urgent first, then oldest); None once claimed or closed."""
        if row.closed_at is not None or row.claimed_by is not None:
            return None
        ahead = session.execute(select(func.count()).select_from(Handoff).where(
            H.closed_at.is_(None), H.claimed_by.is_(None), H.id != row.id,
            or_(H.priority < row.priority,
                and_(H.priority == row.priority, H.created_at < row.created_at),
                and_(H.priority == row.priority, H.created_at == row.created_at, H.id < row.id)))).scalar()
        return int(ahead or 0) + 1

    def handoff_info(self, session: Session, row: Row[Any]) -> HandoffInfo:
        status = ("closed" if row.closed_at is not None else "claimed" if row.claimed_by is not None else "waiting")
        return HandoffInfo(row.id, row.reason, row.priority, status, self.queue_position(session, row), row.region)

    def _ticket(self, session: Session, handoff_id: int) -> tuple[Row[Any], ConversationRecord]:
        """One lock order everywhere: the conversation, then its handoff. A citizen's message locks its
        conversation and then updates the handoff; the desk locked the handoff first, and a red flag sent while
        an agent claimed deadlocked on PostgreSQL (the citizen's message refused with a 503, the breaker tripped).
        A handoff's conversation never changes, so it is read before either lock."""
        conversation_id = session.execute(select(H.conversation_id).where(H.id == handoff_id)).scalar()
        conv = self._lock(session, conversation_id) if conversation_id is not None else None
        row = session.execute(select(Handoff.__table__).where(H.id == handoff_id).with_for_update()).first()
        if row is None:
            raise ConversationError("not_found", f"no handoff {handoff_id}")
        if row.closed_at is not None or conv is None or conv.handoff_id != row.id:
            raise ConversationError("conflict", f"handoff {handoff_id} is already closed ({row.outcome})")
        return row, conv

    def _notice(self, scope: MessageScope, key: str, text: str, agent_name: str, handoff_id: int) -> None:
        scope.add_turn("bot", text, intent=f"handoff_{key}", push=True,
                       payload={"action": f"handoff_{key}", "agent": agent_name, "handoff_id": handoff_id})

    @contextmanager
    def _desk_action(self, handoff_id: int) -> Iterator[tuple[MessageScope, Any]]:
        now = self.clock()
        with self.db.transaction() as session:
            row, conv = self._ticket(session, handoff_id)
            scope = MessageScope(self, session, conv, now)
            yield scope, row
            scope.flush()

    @staticmethod
    def _holder(row: Row[Any], username: str) -> None:
        if row.claimed_by is None:
            raise ConversationError("conflict", f"handoff {row.id} is waiting; claim it first")
        if row.claimed_by != username:
            raise ConversationError("forbidden", f"handoff {row.id} is held by {row.claimed_by}")

    def claim(self, handoff_id: int, username: str, display_name: str, notice: str) -> MessageScope:
        """Exactly one agent wins: the UPDATE only matches while nobody holds the ticket."""
        with self._desk_action(handoff_id) as (scope, row):
            if row.claimed_by is not None:
                raise ConversationError("conflict", f"handoff {handoff_id} is already claimed by {row.claimed_by}")
            scope.conversation.status = transition(scope.conversation.status, "claim")
            won = rowcount(scope.session.execute(update(Handoff).where(H.id == handoff_id, H.claimed_by.is_(None))
                                                 .values(claimed_by=username, claimed_at=row.claimed_at or scope.now)))
            if won != 1:
                raise ConversationError("conflict", f"handoff {handoff_id} was claimed meanwhile")
            self._notice(scope, "claimed", notice, display_name, handoff_id)
            scope.events.append(HandoffClaimed(scope.conversation.id, handoff=self._snapshot(scope, handoff_id),
                                               agent=username))
        return scope

    def reply(self, handoff_id: int, username: str, display_name: str, text: str) -> MessageScope:
        with self._desk_action(handoff_id) as (scope, row):
            self._holder(row, username)
            scope.add_turn("agent", text, intent="agent", push=True,
                           payload={"agent": display_name, "handoff_id": handoff_id})
        return scope

    def note(self, handoff_id: int, username: str, display_name: str, text: str) -> MessageScope:
        """A private note: staff see it in the transcript, the citizen never does."""
        with self._desk_action(handoff_id) as (scope, _row):
            scope.add_turn("note", text, intent="note", payload={"agent": display_name, "handoff_id": handoff_id})
        return scope

    def close(self, handoff_id: int, username: str, display_name: str, outcome: str, notice: str) -> MessageScope:
        """resolve (outcome "resolved") or hand back ("returned"): the bot takes over again."""
        action = {"resolved": "resolve", "returned": "hand_back"}[outcome]
        with self._desk_action(handoff_id) as (scope, row):
            self._holder(row, username)
            scope.conversation.status = transition(scope.conversation.status, action)
            scope.conversation.handoff_id = None
            scope.conversation.failures = 0
            scope.session.execute(update(Handoff).where(H.id == handoff_id)
                                  .values(closed_at=scope.now, closed_by=username, outcome=outcome))
            self._notice(scope, outcome, notice, display_name, handoff_id)
            scope.events.append(HandoffClosed(scope.conversation.id, handoff=self._snapshot(scope, handoff_id),
                                              outcome=outcome, agent=username))
        return scope

    def transfer(self, handoff_id: int, username: str, display_name: str, to_username: str | None,
                 notice: str | None) -> MessageScope:
        """To another agent (stays claimed) or back to the queue (waiting again, keeps its place)."""
        with self._desk_action(handoff_id) as (scope, row):
            self._holder(row, username)
            if to_username is not None:
                target = scope.session.execute(select(Agent.username).where(
                    Agent.username == to_username, Agent.disabled_at.is_(None),
                    Agent.role.in_(DESK_ROLES))).scalar()
                if target is None or target == username:
                    raise ConversationError("invalid", "to_agent: not an active colleague", "to_agent")
                scope.conversation.status = transition(scope.conversation.status, "transfer")
            else:
                scope.conversation.status = transition(scope.conversation.status, "release")
            scope.session.execute(update(Handoff).where(H.id == handoff_id).values(claimed_by=to_username))
            if notice:
                self._notice(scope, "transferred", notice, display_name, handoff_id)
            scope.events.append(HandoffTransferred(scope.conversation.id, handoff=self._snapshot(scope, handoff_id),
                                                   agent=username, to_agent=to_username))
        return scope

    def _abandon_if_waiting(self, session: Session, conversation_id: str, now: dt.datetime,
                            silent_since: dt.datetime | None = None, with_agent: bool = False) -> bool:
        """``silent_since``: only if the citizen has not written since (re-checked under the lock: a sweep's
        candidate list is read before the lock, and a citizen writing in between was abandoned all the same).
        ``with_agent``: a claimed ticket too — the citizen started a new conversation (the widget's 新对话, a shared
        family phone's next person), so nobody reads this one any more. Before, the ticket stayed claimed: the
        agent kept writing into a conversation no screen showed, and the new conversation's "转人工" was told to go
        back to "the other conversation", which the widget had cleared."""
        conv = self._lock(session, conversation_id)
        if conv is None or conv.handoff_id is None or conv.status not in ((S.WAITING, S.CLAIMED) if with_agent
                                                                          else (S.WAITING,)):
            return False
        if silent_since is not None and conv.updated_at >= silent_since:
            return False
        scope = MessageScope(self, session, conv, now)
        self._abandon(scope)
        scope.flush()
        return True

    def _abandon(self, scope: MessageScope) -> None:
        conv = scope.conversation
        handoff_id = conv.handoff_id
        if handoff_id is None:
            raise InvalidTransition("abandon", conv.status)
        conv.status = transition(conv.status, "abandon")
        conv.handoff_id = None
        scope.session.execute(update(Handoff).where(H.id == handoff_id)
                              .values(closed_at=scope.now, outcome="abandoned"))
        scope.events.append(HandoffClosed(conv.id, handoff=self._snapshot(scope, handoff_id), outcome="abandoned"))

    def abandon_stale(self, silent_for: dt.timedelta) -> int:
        """Waiting citizens silent for ``silent_for`` have left (counted as abandoned)."""
        now = self.clock()
        cutoff = now - silent_for
        with self.db.transaction() as session:
            ids: list[str] = list(session.execute(select(C.id).where(C.status == S.WAITING.value,
                                                     C.updated_at < cutoff)).scalars())
            return sum(self._abandon_if_waiting(session, conversation_id, now, cutoff) for conversation_id in ids)

    def _snapshot(self, scope: MessageScope, handoff_id: int) -> dict[str, Any]:
        row = scope.session.execute(select(Handoff.__table__).where(H.id == handoff_id)).one()
        return handoff_snapshot(row, self.vault)


class StaleWaitSweeper:
    """Closes the tickets of waiting citizens who left (silent for ``silent_for``) as abandoned, every
    ``interval`` seconds, so the queue and the dashboard's abandonment show them. Each server process
    runs one; sweeps that overlap are harmless (each conversation is locked and re-checked)."""

    def __init__(self, conversations: ConversationService, silent_for: dt.timedelta, interval: float):
        if interval <= 0 or silent_for <= dt.timedelta():
            raise ValueError("interval and silent_for must be positive")
        self.conversations = conversations
        self.silent_for = silent_for
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        try:
            return self.conversations.abandon_stale(self.silent_for)
        except StoreUnavailable as exc:  # the next sweep tries again
            log.warning("stale-wait sweep skipped: %s", exc)
            return 0

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stale-wait-sweeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                closed = self.run_once()
            except Exception:  # the sweeper must outlive a bug in one sweep
                log.exception("stale-wait sweep failed")
                continue
            if closed:
                log.info("closed %d ticket(s) of citizens who left the queue", closed)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
