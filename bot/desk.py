"""The agent desk: what people do with handed-off conversations, without HTTP.

Accounts (scrypt-hashed), on-duty presence, the queue, race-safe claiming,
agent replies, resolve / hand back (the bot takes over again), answer feedback
and leave-a-message callback tickets. Connectors call this; so do tests.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from bot import commands, webhooks
from bot.desk_models import Agent, CallbackTicket, Feedback, iso
from bot.store import OPEN_STATUSES, Conversation, Handoff, Store, Turn, utcnow

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")
MIN_PASSWORD = 8
MAX_REPLY_CHARS = 4000
PRESENCE_WINDOW = dt.timedelta(seconds=90)  # the console polls every ~20 s
DEFAULT_WAIT_PER_TICKET = 180.0  # seconds, until there is history to average

_DUMMY_HASH = generate_password_hash("not-a-real-password", method="scrypt")

NOTICES = {
    "claimed": {"zh": "人工客服 {agent} 已接入，请问有什么可以帮您？",
                "en": "{agent}, a human agent, has joined the conversation. How can I help?"},
    "resolved": {"zh": "本次人工服务已结束，感谢您的耐心。如有其他问题，可以继续向智能助手提问。",
                 "en": "The agent has closed this conversation. Thank you for your patience; "
                       "you can keep asking the assistant anything else."},
    "returned": {"zh": "人工客服已将对话交回智能助手，您可以继续提问。",
                 "en": "The agent has handed you back to the assistant; feel free to keep asking."},
}


class DeskError(ValueError):
    """A request the desk refuses; ``status`` maps to HTTP, ``field`` names the culprit."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class AgentInfo:
    username: str
    display_name: str


def normalise_phone(raw: str) -> str:
    """Accept mainland mobiles (13812345678, +86 138-1234-5678) and landlines (010-12345678)."""
    phone = re.sub(r"[\s()]", "", raw or "")
    phone = re.sub(r"^(\+86|0086)-?", "", phone)
    if re.fullmatch(r"1[3-9]\d{9}", phone.replace("-", "")):
        return phone.replace("-", "")
    landline = re.fullmatch(r"(0\d{2,3})-?(\d{7,8})(?:-(\d{1,6}))?", phone)
    if landline:
        area, number, ext = landline.groups()
        return f"{area}-{number}" + (f"-{ext}" if ext else "")
    raise DeskError(400, "phone: enter a mainland mobile number (11 digits starting with 1, e.g. 13812345678) "
                         "or a landline with area code (e.g. 010-12345678)", "phone")


def turn_view(turn: Turn, language: str, kb=None) -> dict[str, Any]:
    """A turn as the widget and console show it: a button payload is shown by its title."""
    out = turn.to_dict()
    out["display"] = turn.text
    parsed = commands.parse_command(turn.text) if turn.role == "user" else None
    if parsed is None:
        return out
    if parsed.name == commands.FAQ and kb is not None and kb.get(str(parsed.args.get("entry"))):
        out["display"] = kb.get(str(parsed.args["entry"])).title(language)
    elif parsed.name == commands.ASK_HUMAN:
        out["display"] = "Talk to a person" if language == "en" else "转人工"
    elif parsed.name == commands.NONE_OF_THESE:
        out["display"] = "None of these" if language == "en" else "都不是"
    else:
        out["display"] = parsed.name.replace("_", " ")
    return out


class AgentDesk:
    def __init__(self, store: Store, kb=None):
        self.store = store
        self.kb = kb  # optional: lets transcripts show button titles instead of payloads

    # -- accounts ------------------------------------------------------------------

    def create_agent(self, username: str, password: str, display_name: str | None = None) -> AgentInfo:
        username = (username or "").strip().lower()
        if not USERNAME.match(username):
            raise DeskError(400, "username: 2-32 characters: lowercase letters, digits, _ . - ", "username")
        if len(password or "") < MIN_PASSWORD:
            raise DeskError(400, f"password: must be at least {MIN_PASSWORD} characters", "password")
        with self.store.transaction() as session:
            if session.execute(select(Agent.id).where(Agent.username == username)).first():
                raise DeskError(409, f"agent {username!r} already exists", "username")
            session.add(Agent(username=username, display_name=(display_name or username)[:64],
                              password_hash=generate_password_hash(password, method="scrypt")))
        return AgentInfo(username, display_name or username)

    def authenticate(self, username: str, password: str) -> AgentInfo | None:
        with self.store.transaction() as session:
            agent = session.execute(select(Agent).where(Agent.username == (username or "").strip().lower())
                                    ).scalar_one_or_none()
            if agent is None:
                check_password_hash(_DUMMY_HASH, password or "")  # same cost: no username oracle
                return None
            if not check_password_hash(agent.password_hash, password or ""):
                return None
            agent.on_duty, agent.last_seen = True, utcnow()
            return AgentInfo(agent.username, agent.display_name)

    def agent(self, username: str) -> AgentInfo | None:
        with self.store.transaction() as session:
            agent = session.execute(select(Agent).where(Agent.username == username)).scalar_one_or_none()
            return AgentInfo(agent.username, agent.display_name) if agent else None

    # -- presence ------------------------------------------------------------------

    def set_on_duty(self, username: str, on_duty: bool) -> None:
        with self.store.transaction() as session:
            session.execute(update(Agent).where(Agent.username == username)
                            .values(on_duty=on_duty, last_seen=utcnow()))
            self.store.mark_changed(session, queue=True)  # waiting citizens' "agent on duty?" changes

    def heartbeat(self, username: str) -> bool:
        """Marks the agent as seen; returns whether they are on duty."""
        with self.store.transaction() as session:
            agent = session.execute(select(Agent).where(Agent.username == username)).scalar_one_or_none()
            if agent is None:
                return False
            agent.last_seen = utcnow()
            return bool(agent.on_duty)

    def agents_on_duty(self) -> int:
        with self.store.transaction() as session:
            return int(session.execute(select(func.count(Agent.id)).where(
                Agent.on_duty.is_(True), Agent.last_seen >= utcnow() - PRESENCE_WINDOW)).scalar() or 0)

    def seconds_per_ticket(self, session: Session) -> float:
        """Recent average time from handoff to claim; the basis of the citizen's wait estimate."""
        recent = session.execute(select(Handoff.created_at, Handoff.claimed_at)
                                 .where(Handoff.claimed_at.is_not(None))
                                 .order_by(Handoff.claimed_at.desc()).limit(20)).all()
        waits = [(claimed - created).total_seconds() for created, claimed in recent]
        return max(30.0, sum(waits) / len(waits)) if waits else DEFAULT_WAIT_PER_TICKET

    # -- queue -----------------------------------------------------------------------

    def queue(self, username: str | None = None) -> list[dict[str, Any]]:
        """Open tickets (urgent first, then longest waiting), then the ones ``username`` holds."""
        now = utcnow()
        with self.store.transaction() as session:
            rows = session.execute(select(Handoff).where(Handoff.status.in_(OPEN_STATUSES))
                                   .order_by(Handoff.priority, Handoff.created_at, Handoff.id)).scalars().all()
            out = []
            for handoff in rows:
                if handoff.status == "claimed" and handoff.claimed_by != username:
                    continue
                last_user = session.execute(
                    select(Turn).where(Turn.conversation_id == handoff.conversation_id, Turn.role == "user")
                    .order_by(Turn.seq.desc()).limit(1)).scalar()
                item = handoff.to_dict(self.store.queue_position(session, handoff))
                item["waiting_seconds"] = int((now - handoff.created_at).total_seconds())
                item["last_message"] = turn_view(last_user, handoff.language, self.kb)["display"][:140] if last_user else ""
                out.append(item)
            return out

    def queue_signature(self, username: str | None) -> str:
        """Changes whenever the queue an agent sees changes (for long polling)."""
        with self.store.transaction() as session:
            rows = session.execute(select(Handoff.id, Handoff.status, Handoff.priority, Handoff.claimed_by)
                                   .where(Handoff.status.in_(OPEN_STATUSES)).order_by(Handoff.id)).all()
            callbacks = session.execute(select(func.count(CallbackTicket.id), func.max(CallbackTicket.id))
                                        .where(CallbackTicket.status == "open")).one()
        text = repr([tuple(r) for r in rows]) + repr(tuple(callbacks)) + repr(username)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def handoff(self, handoff_id: int) -> dict[str, Any]:
        with self.store.transaction() as session:
            handoff = self._handoff(session, handoff_id)
            conv = session.get(Conversation, handoff.conversation_id)
            out = handoff.to_dict(self.store.queue_position(session, handoff))
            out["conversation_status"] = conv.status
            out["transcript"] = [turn_view(t, conv.language, self.kb) for t in conv.turns]
            return out

    # -- claiming and replying ---------------------------------------------------------

    def claim(self, handoff_id: int, agent: AgentInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        """Exactly one agent wins: the UPDATE only matches while the ticket is still open."""
        with self.store.transaction() as session:
            handoff = self._handoff(session, handoff_id)
            won = session.execute(
                update(Handoff).where(Handoff.id == handoff_id, Handoff.status == "open")
                .values(status="claimed", claimed_by=agent.username, claimed_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount
            if won != 1:
                session.refresh(handoff)
                who = f" by {handoff.claimed_by}" if handoff.claimed_by else ""
                raise DeskError(409, f"handoff {handoff_id} is already {handoff.status}{who}")
            session.refresh(handoff)
            self.store.mark_changed(session, queue=True)
            conv, turn = self._notice(session, handoff, "claimed", agent)
            webhooks.record(session, "handoff.claimed", {"handoff": webhooks.handoff_payload(handoff),
                                                         "agent": agent.username})
            return conv, turn

    def reply(self, handoff_id: int, agent: AgentInfo, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stores the agent's message as a turn; returns (conversation, turn) for ``deliver``."""
        text = (text or "").strip()
        if not text:
            raise DeskError(400, "text: must be a non-empty string", "text")
        if len(text) > MAX_REPLY_CHARS:
            raise DeskError(400, f"text: must be at most {MAX_REPLY_CHARS} characters", "text")
        with self.store.transaction() as session:
            handoff = self._handoff(session, handoff_id)
            self._require_holder(handoff, agent)
            conv = self.store.conversation_for_update(session, handoff.conversation_id, handoff.user_id,
                                                      handoff.channel, handoff.language)
            turn = self.store.add_turn(session, conv, "agent", text, intent="agent",
                                       payload={"agent": agent.display_name, "handoff_id": handoff.id})
            return _conversation_dict(conv), turn_view(turn, conv.language)

    def resolve(self, handoff_id: int, agent: AgentInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._close(handoff_id, agent, "resolved")

    def hand_back(self, handoff_id: int, agent: AgentInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._close(handoff_id, agent, "returned")

    def _close(self, handoff_id: int, agent: AgentInfo, status: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Ends the ticket and gives the conversation back to the bot (status 'bot')."""
        with self.store.transaction() as session:
            handoff = self._handoff(session, handoff_id)
            if handoff.status not in OPEN_STATUSES:
                raise DeskError(409, f"handoff {handoff_id} is already {handoff.status}")
            if handoff.status == "claimed":
                self._require_holder(handoff, agent)
            done = session.execute(
                update(Handoff).where(Handoff.id == handoff_id, Handoff.status == handoff.status)
                .values(status=status, closed_at=utcnow(),
                        claimed_by=handoff.claimed_by or agent.username)
                .execution_options(synchronize_session=False)).rowcount
            if done != 1:
                raise DeskError(409, f"handoff {handoff_id} changed meanwhile; reload")
            session.refresh(handoff)
            conv = self.store.conversation_for_update(session, handoff.conversation_id, handoff.user_id,
                                                      handoff.channel, handoff.language)
            if self.store.open_handoff(session, conv.id) is None:
                conv.status = "bot"
            self.store.mark_changed(session, queue=True)
            conv_dict, turn = self._notice(session, handoff, status, agent)
            webhooks.record(session, f"handoff.{status}", {"handoff": webhooks.handoff_payload(handoff),
                                                           "agent": agent.username})
            return conv_dict, turn

    def _notice(self, session: Session, handoff: Handoff, key: str,
                agent: AgentInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        conv = self.store.conversation_for_update(session, handoff.conversation_id, handoff.user_id,
                                                  handoff.channel, handoff.language)
        text = NOTICES[key]["en" if conv.language == "en" else "zh"].format(agent=agent.display_name)
        turn = self.store.add_turn(session, conv, "bot", text, intent=f"handoff_{key}",
                                   payload={"action": f"handoff_{key}", "agent": agent.display_name,
                                            "handoff_id": handoff.id})
        return _conversation_dict(conv), turn_view(turn, conv.language)

    @staticmethod
    def _handoff(session: Session, handoff_id: int) -> Handoff:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            raise DeskError(404, f"no handoff {handoff_id}")
        return handoff

    @staticmethod
    def _require_holder(handoff: Handoff, agent: AgentInfo) -> None:
        if handoff.status != "claimed":
            raise DeskError(409, f"handoff {handoff.id} is {handoff.status}; claim it first")
        if handoff.claimed_by != agent.username:
            raise DeskError(403, f"handoff {handoff.id} is held by {handoff.claimed_by}")

    # -- the citizen's side ----------------------------------------------------------------

    def turns_after(self, conversation_id: str, after_id: int = 0, user_id: str | None = None) -> dict[str, Any] | None:
        """New turns since ``after_id`` plus handoff state; None when unknown (or not this user's)."""
        with self.store.transaction() as session:
            conv = session.get(Conversation, conversation_id)
            if conv is None or (user_id is not None and conv.user_id != user_id):
                return None
            turns = session.execute(select(Turn).where(Turn.conversation_id == conv.id, Turn.id > after_id)
                                    .order_by(Turn.id)).scalars().all()
            votes = dict(session.execute(select(Feedback.turn_id, Feedback.value)
                                         .where(Feedback.conversation_id == conv.id)).all())
            views = []
            for turn in turns:
                view = turn_view(turn, conv.language, self.kb)
                if turn.id in votes:
                    view["feedback"] = votes[turn.id]
                views.append(view)
            handoff = self.store.open_handoff(session, conv.id)
            info = None
            if handoff is not None:
                position = self.store.queue_position(session, handoff)
                agent_name = session.execute(select(Agent.display_name).where(
                    Agent.username == handoff.claimed_by)).scalar() if handoff.claimed_by else None
                # the citizen sees the agent's display name, never the login name
                info = {"id": handoff.id, "status": handoff.status, "priority": handoff.priority,
                        "queue_position": position, "agent": agent_name, "estimated_wait_seconds": None}
                if position is not None:
                    on_duty = max(1, self._on_duty(session))
                    info["estimated_wait_seconds"] = int(position * self.seconds_per_ticket(session) / on_duty)
            return {"conversation_id": conv.id, "status": conv.status, "language": conv.language,
                    "handoff": info, "agents_on_duty": self._on_duty(session), "turns": views,
                    "last_id": max([after_id] + [t.id for t in turns])}

    @staticmethod
    def _on_duty(session: Session) -> int:
        return int(session.execute(select(func.count(Agent.id)).where(
            Agent.on_duty.is_(True), Agent.last_seen >= utcnow() - PRESENCE_WINDOW)).scalar() or 0)

    def feedback(self, conversation_id: str, turn_id: int, value: str) -> dict[str, Any]:
        if value not in {"up", "down"}:
            raise DeskError(400, "value: must be 'up' or 'down'", "value")
        with self.store.transaction() as session:
            turn = session.get(Turn, turn_id)
            if turn is None or turn.conversation_id != conversation_id:
                raise DeskError(404, f"no turn {turn_id} in this conversation", "turn_id")
            if turn.role != "bot":
                raise DeskError(400, "turn_id: only bot answers take feedback", "turn_id")
            row = session.execute(select(Feedback).where(Feedback.turn_id == turn_id)).scalar_one_or_none()
            if row is None:
                session.add(Feedback(turn_id=turn_id, conversation_id=conversation_id,
                                     entry_id=turn.entry_id, value=value))
            else:
                row.value = value
            return {"turn_id": turn_id, "value": value, "entry_id": turn.entry_id}

    def leave_callback(self, phone: str, conversation_id: str | None = None, name: str | None = None,
                       note: str = "", language: str = "zh") -> dict[str, Any]:
        phone = normalise_phone(phone)
        with self.store.transaction() as session:
            if conversation_id and session.get(Conversation, conversation_id) is None:
                raise DeskError(404, f"no conversation {conversation_id!r}", "conversation_id")
            ticket = CallbackTicket(conversation_id=conversation_id, phone=phone, name=(name or None),
                                    note=note or "", language="en" if language == "en" else "zh", status="open")
            session.add(ticket)
            session.flush()
            out = ticket.to_dict()
            webhooks.record(session, "callback.created", {"callback": out})
            self.store.mark_changed(session, queue=True)  # the consoles' callback list changed
            return out

    def callbacks(self, status: str | None = "open") -> list[dict[str, Any]]:
        with self.store.transaction() as session:
            query = select(CallbackTicket).order_by(CallbackTicket.created_at, CallbackTicket.id)
            if status:
                query = query.where(CallbackTicket.status == status)
            return [c.to_dict() for c in session.execute(query).scalars()]

    def callback_done(self, ticket_id: int, agent: AgentInfo) -> dict[str, Any]:
        with self.store.transaction() as session:
            ticket = session.get(CallbackTicket, ticket_id)
            if ticket is None:
                raise DeskError(404, f"no callback ticket {ticket_id}")
            ticket.status, ticket.handled_by, ticket.handled_at = "done", agent.username, utcnow()
            self.store.mark_changed(session, queue=True)
            return ticket.to_dict()


def _conversation_dict(conv: Conversation) -> dict[str, Any]:
    return {"id": conv.id, "channel": conv.channel, "user_id": conv.user_id, "language": conv.language,
            "status": conv.status, "created_at": iso(conv.created_at)}
