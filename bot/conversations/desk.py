"""The agent desk and the citizen's view of it, without HTTP.

Agents: on-duty presence (with duty periods for staffing numbers), the queue,
ticket details with the citizen's earlier conversations, claim / reply / private
note / transfer / resolve / hand back (all through the ConversationService, the
only writer of conversation state), canned replies, callback tickets.
Citizens: the transcript since a turn id with the state of their handoff
(queue position, an ETA from measured handle times, opening hours), feedback on
answers, a satisfaction rating after an agent resolved, a callback request.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from bot import commands
from bot.config import DeskSettings, LimitSettings
from bot.conversations.events import CallbackDone, CallbackRequested, DutyChanged
from bot.conversations.outbox import Outbox
from bot.conversations.privacy import Vault, mask_phone
from bot.conversations.service import ConversationError, ConversationService, MessageScope, StoredTurn, handoff_snapshot
from bot.conversations.staff import StaffDirectory, StaffMember
from bot.conversations.status import WITH_PERSON
from bot.db import Database
from bot.kb import KnowledgeBase
from bot.models import (
    Agent,
    CallbackTicket,
    CannedReply,
    Conversation,
    DutyPeriod,
    Feedback,
    Handoff,
    Rating,
    Turn,
    iso,
    utcnow,
)
from bot.responses import Responses

MAX_REPLY_CHARS = 4000
RECENT_FOR_AVERAGES = 20
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FEEDBACK_REASONS = ("wrong", "outdated", "unclear", "human")
HEARTBEAT_EVERY = dt.timedelta(seconds=15)

H = Handoff.__table__.c
T = Turn.__table__.c
C = Conversation.__table__.c


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
    raise ConversationError("invalid", "phone: enter a mainland mobile number (11 digits starting with 1, "
                                       "e.g. 13812345678) or a landline with area code (e.g. 010-12345678)", "phone")


class OpeningHours:
    """When agents answer, per weekday, in the hotline's time zone."""

    def __init__(self, settings: DeskSettings):
        self.zone = ZoneInfo(settings.timezone)
        self.ranges: dict[str, list[tuple[dt.time, dt.time]]] = {}
        for day in DAYS:
            spans = []
            for part in filter(None, (p.strip() for p in settings.hours.get(day, "").split(","))):
                start, end = part.split("-")
                spans.append((dt.time.fromisoformat(start),
                              dt.time.max if end == "24:00" else dt.time.fromisoformat(end)))
            self.ranges[day] = spans

    def local(self, now_utc: dt.datetime) -> dt.datetime:
        return now_utc.replace(tzinfo=dt.timezone.utc).astimezone(self.zone)

    def is_open(self, now_utc: dt.datetime) -> bool:
        local = self.local(now_utc)
        return any(start <= local.time() < end for start, end in self.ranges[DAYS[local.weekday()]])

    def next_open(self, now_utc: dt.datetime) -> dt.datetime | None:
        """The next opening moment (local time) after ``now_utc``, within a week."""
        local = self.local(now_utc)
        for offset in range(8):
            day = local.date() + dt.timedelta(days=offset)
            for start, _end in self.ranges[DAYS[day.weekday()]]:
                moment = dt.datetime.combine(day, start, tzinfo=self.zone)
                if moment > local:
                    return moment
        return None

    def describe(self) -> dict[str, str]:
        return {day: ", ".join(f"{s:%H:%M}-{'24:00' if e == dt.time.max else f'{e:%H:%M}'}" for s, e in spans)
                for day, spans in self.ranges.items()}


def turn_view(turn: StoredTurn | Any, language: str, kb: KnowledgeBase | None = None) -> dict[str, Any]:
    """A turn as the widget and console show it: a button payload is shown by its title."""
    out = turn.to_dict() if isinstance(turn, StoredTurn) else StoredTurn(
        turn.id, turn.seq, turn.role, turn.text, turn.created_at, turn.intent, turn.entry_id, turn.score,
        turn.payload or {}).to_dict()
    out["display"] = out["text"]
    parsed = commands.parse_command(out["text"]) if out["role"] == "user" else None
    if parsed is None:
        return out
    entry = kb.get(str(parsed.args.get("entry"))) if (kb is not None and parsed.name == commands.FAQ) else None
    if entry is not None:
        out["display"] = entry.title(language)
    elif parsed.name == commands.ASK_HUMAN:
        out["display"] = "Talk to a person" if language == "en" else "转人工"
    elif parsed.name == commands.NONE_OF_THESE:
        out["display"] = "None of these" if language == "en" else "都不是"
    else:
        out["display"] = parsed.name.replace("_", " ")
    return out


class Desk:
    def __init__(self, db: Database, conversations: ConversationService, staff: StaffDirectory, outbox: Outbox,
                 vault: Vault, responses: Responses, settings: DeskSettings | None = None, limits: LimitSettings | None = None,
                 kb: Callable[[], Any] | None = None, clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.conversations = conversations
        self.staff = staff
        self.outbox = outbox
        self.vault = vault
        self.responses = responses
        self.settings = settings or DeskSettings()
        self.limits = limits or LimitSettings()
        self.hours = OpeningHours(self.settings)
        self._kb = kb or (lambda: None)
        self.clock = clock
        self.presence = dt.timedelta(seconds=self.settings.presence_seconds)

    @property
    def kb(self) -> KnowledgeBase | None:
        kb: KnowledgeBase | None = self._kb()
        return kb

    # -- presence ---------------------------------------------------------------------------

    def set_on_duty(self, member: StaffMember, on_duty: bool) -> None:
        now = self.clock()
        with self.db.transaction() as session:
            session.execute(update(Agent).where(Agent.id == member.id).values(on_duty=on_duty, last_seen=now))
            self._duty_period(session, member.username, on_duty, now)
            self.outbox.record(session, [DutyChanged(None, agent=member.username, on_duty=on_duty)], now)

    def heartbeat(self, member: StaffMember) -> bool:
        """Marks the agent as seen (at most every 15 s); returns whether they are on duty."""
        now = self.clock()
        with self.db.read() as session:
            on_duty, last_seen = session.execute(select(Agent.on_duty, Agent.last_seen)
                                                 .where(Agent.id == member.id)).one()
        if last_seen is None or now - last_seen >= HEARTBEAT_EVERY:
            with self.db.transaction() as session:
                session.execute(update(Agent).where(Agent.id == member.id).values(last_seen=now))
                if on_duty:
                    self._duty_period(session, member.username, True, now)
        return bool(on_duty)

    def _duty_period(self, session: Session, username: str, on_duty: bool, now: dt.datetime) -> None:
        """One open period per agent while on duty; a period whose agent vanished (closed
        tab) ends at its last heartbeat, not when somebody finally notices."""
        period = session.execute(select(DutyPeriod).where(DutyPeriod.agent == username,
                                                          DutyPeriod.ended_at.is_(None))).scalar_one_or_none()
        if period is not None and now - period.last_seen > self.presence:
            period.ended_at = period.last_seen
            period = None
        if on_duty:
            if period is None:
                session.add(DutyPeriod(agent=username, started_at=now, last_seen=now))
            else:
                period.last_seen = now
        elif period is not None:
            period.ended_at, period.last_seen = now, now

    def _on_duty(self, session: Session) -> int:
        return int(session.execute(select(func.count(Agent.id)).where(
            Agent.on_duty.is_(True), Agent.disabled_at.is_(None),
            Agent.last_seen >= self.clock() - self.presence)).scalar() or 0)

    def agents_on_duty(self) -> int:
        with self.db.read() as session:
            return self._on_duty(session)

    def colleagues(self, member: StaffMember) -> list[dict[str, Any]]:
        """Agents a ticket can be transferred to."""
        with self.db.read() as session:
            rows = session.execute(select(Agent.username, Agent.display_name, Agent.on_duty, Agent.last_seen).where(
                Agent.disabled_at.is_(None), Agent.username != member.username,
                Agent.role.in_(("agent", "supervisor", "admin"))).order_by(Agent.display_name)).all()
        cutoff = self.clock() - self.presence
        return [{"username": u, "display_name": d, "on_duty": bool(o and s and s >= cutoff)} for u, d, o, s in rows]

    # -- measured times --------------------------------------------------------------------

    @staticmethod
    def handle_seconds(session: Session) -> float | None:
        """Mean claim → close time of recent tickets; None until there is history. As on the dashboard
        (``Analytics.handoffs``), an agent's time with a citizen who then left (abandoned while claimed) is handling
        time: the wait promised to citizens left it out, and came out shorter than the dashboard's handle time."""
        handled = or_(H.outcome.in_(("resolved", "returned")), and_(H.outcome == "abandoned", H.claimed_by.is_not(None)))
        rows = session.execute(select(H.claimed_at, H.closed_at).where(
            H.claimed_at.is_not(None), H.closed_at.is_not(None), handled)
            .order_by(H.closed_at.desc()).limit(RECENT_FOR_AVERAGES)).all()
        spans = [(closed - claimed).total_seconds() for claimed, closed in rows
                 if isinstance(claimed, dt.datetime) and isinstance(closed, dt.datetime) and closed >= claimed]
        return sum(spans) / len(spans) if spans else None

    def estimate_wait(self, session: Session, position: int | None) -> int | None:
        """Position × measured handle time ÷ agents on duty. None (no promise) when nobody is
        on duty, the desk is closed, or there is no history to measure from."""
        if position is None:
            return None
        agents = self._on_duty(session)
        handle = self.handle_seconds(session)
        if agents == 0 or handle is None or not self.hours.is_open(self.clock()):
            return None
        return int(round(position * handle / agents))

    # -- the queue ---------------------------------------------------------------------------

    def queue(self, member: StaffMember) -> list[dict[str, Any]]:
        """Open tickets: waiting ones (urgent first, then longest waiting), then the ones ``member`` holds."""
        now = self.clock()
        with self.db.read() as session:
            rows = session.execute(select(Handoff.__table__).where(H.closed_at.is_(None))
                                   .order_by(H.priority, H.created_at, H.id)).all()
            callbacks = self._callbacks_by_conversation(session, [r.conversation_id for r in rows])
            out = []
            for row in rows:
                if row.claimed_by is not None and row.claimed_by != member.username:
                    continue
                item = self._ticket(session, row, now)
                item["callback"] = callbacks.get(row.conversation_id)
                out.append(item)
            return out

    def _ticket(self, session: Session, row: Row[Any], now: dt.datetime) -> dict[str, Any]:
        item = handoff_snapshot(row, self.vault)
        item["status"] = "claimed" if row.claimed_by else "waiting"
        item["queue_position"] = self.conversations.queue_position(session, row)
        item["waiting_seconds"] = int((now - row.created_at).total_seconds())
        return item

    def queue_signature(self, member: StaffMember) -> str:
        """Changes whenever the queue an agent sees changes (for long polling)."""
        with self.db.read() as session:
            rows = session.execute(select(H.id, H.priority, H.claimed_by).where(H.closed_at.is_(None))
                                   .order_by(H.id)).all()
            callbacks = session.execute(select(func.count(CallbackTicket.id), func.max(CallbackTicket.id))
                                        .where(CallbackTicket.status == "open")).one()
            on_duty = self._on_duty(session)
        text = repr([tuple(r) for r in rows]) + repr(tuple(callbacks)) + repr(member.username) + repr(on_duty)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def handoff(self, handoff_id: int, member: StaffMember | None = None) -> dict[str, Any]:
        """A ticket with the whole context: transcript (notes included), the citizen's earlier
        conversations, linked callbacks."""
        now = self.clock()
        with self.db.read() as session:
            row = session.execute(select(Handoff.__table__).where(H.id == handoff_id)).first()
            if row is None:
                raise ConversationError("not_found", f"no handoff {handoff_id}")
            conv = session.get(Conversation, row.conversation_id)
            if conv is None:
                raise ConversationError("not_found", f"no conversation for handoff {handoff_id}")
            out = self._ticket(session, row, now)
            if row.closed_at is not None:
                out["status"] = row.outcome or "closed"
            out["conversation_status"] = conv.status
            turns = session.execute(select(Turn.__table__).where(T.conversation_id == conv.id)
                                    .order_by(T.seq)).all()
            out["transcript"] = [turn_view(t, conv.language, self.kb) for t in turns]
            out["previous_conversations"] = self._history(session, conv)
            out["callbacks"] = [c.to_dict() for c in session.execute(
                select(CallbackTicket).where(CallbackTicket.conversation_id == conv.id)
                .order_by(CallbackTicket.id)).scalars()]
            return out

    def _history(self, session: Session, conv: Conversation, limit: int = 10) -> list[dict[str, Any]]:
        rows = session.execute(select(Conversation).where(
            Conversation.channel == conv.channel, Conversation.user_id == conv.user_id, Conversation.id != conv.id)
            .order_by(Conversation.created_at.desc()).limit(limit)).scalars().all()
        out = []
        for other in rows:
            first = session.execute(select(T.text).where(T.conversation_id == other.id, T.role == "user",
                                                         ~T.text.startswith("/")).order_by(T.seq).limit(1)).scalar()
            tickets = session.execute(select(func.count(H.id)).where(H.conversation_id == other.id)).scalar()
            out.append({"conversation_id": other.id, "created_at": iso(other.created_at), "status": other.status,
                        "first_question": (first or "")[:140], "handoffs": int(tickets or 0),
                        "turns": other.turn_count})
        return out

    def new_turns(self, conversation_id: str, after_id: int) -> list[dict[str, Any]]:
        """Turns of a conversation after ``after_id``, notes included (the console's view)."""
        with self.db.read() as session:
            language = session.execute(select(C.language).where(C.id == conversation_id)).scalar() or "zh"
            rows = session.execute(select(Turn.__table__).where(T.conversation_id == conversation_id,
                                                                T.id > after_id).order_by(T.id)).all()
            return [turn_view(r, language, self.kb) for r in rows]

    def transcript(self, conversation_id: str) -> dict[str, Any] | None:
        """Staff read API: one conversation with every turn (notes included)."""
        with self.db.read() as session:
            conv = session.get(Conversation, conversation_id)
            if conv is None:
                return None
            ticket = session.execute(select(Handoff.__table__).where(H.id == conv.handoff_id)).first() \
                if conv.handoff_id else None
            turns = session.execute(select(Turn.__table__).where(T.conversation_id == conv.id).order_by(T.seq)).all()
            return {"conversation_id": conv.id, "channel": conv.channel, "language": conv.language,
                    "status": conv.status, "region": conv.region, "created_at": iso(conv.created_at),
                    "user": self.vault.pseudonym(f"{conv.channel}:{conv.user_id}"),
                    "handoff": self._ticket(session, ticket, self.clock()) if ticket else None,
                    "turns": [_stored_from_row(t).to_dict() for t in turns]}

    def list_handoffs(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        now = self.clock()
        with self.db.read() as session:
            query = select(Handoff.__table__)
            if status == "waiting":
                query = query.where(H.closed_at.is_(None), H.claimed_by.is_(None))
            elif status == "claimed":
                query = query.where(H.closed_at.is_(None), H.claimed_by.is_not(None))
            elif status in ("resolved", "returned", "abandoned"):
                query = query.where(H.outcome == status)
            query = query.order_by(H.priority, H.created_at, H.id).limit(limit)
            return [self._ticket(session, row, now) for row in session.execute(query).all()]

    # -- acting on tickets ----------------------------------------------------------------------

    def _text(self, key: str, language: str, **values: Any) -> str:
        return str(self.responses(key, language, **values))

    def _language(self, handoff_id: int) -> str:
        with self.db.read() as session:
            language = session.execute(select(H.language).where(H.id == handoff_id)).scalar()
        if language is None:
            raise ConversationError("not_found", f"no handoff {handoff_id}")
        return str(language)

    def claim(self, handoff_id: int, member: StaffMember) -> MessageScope:
        notice = self._text("desk_claimed", self._language(handoff_id), agent=member.display_name)
        return self.conversations.claim(handoff_id, member.username, member.display_name, notice)

    def reply(self, handoff_id: int, member: StaffMember, text: str) -> MessageScope:
        return self.conversations.reply(handoff_id, member.username, member.display_name, self._agent_text(text))

    def note(self, handoff_id: int, member: StaffMember, text: str) -> MessageScope:
        return self.conversations.note(handoff_id, member.username, member.display_name, self._agent_text(text))

    def resolve(self, handoff_id: int, member: StaffMember) -> MessageScope:
        notice = self._text("desk_resolved", self._language(handoff_id), agent=member.display_name)
        return self.conversations.close(handoff_id, member.username, member.display_name, "resolved", notice)

    def hand_back(self, handoff_id: int, member: StaffMember) -> MessageScope:
        notice = self._text("desk_returned", self._language(handoff_id), agent=member.display_name)
        return self.conversations.close(handoff_id, member.username, member.display_name, "returned", notice)

    def transfer(self, handoff_id: int, member: StaffMember, to_username: str | None) -> MessageScope:
        target = self.staff.get(to_username) if to_username else None
        if to_username and (target is None or not target.can("desk")):
            raise ConversationError("invalid", "to_agent: not an active colleague", "to_agent")
        notice = self._text("desk_transferred", self._language(handoff_id), agent=target.display_name) \
            if target else None
        return self.conversations.transfer(handoff_id, member.username, member.display_name,
                                           target.username if target else None, notice)

    @staticmethod
    def _agent_text(text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise ConversationError("invalid", "text: must be a non-empty string", "text")
        if len(text) > MAX_REPLY_CHARS:
            raise ConversationError("invalid", f"text: must be at most {MAX_REPLY_CHARS} characters", "text")
        if "\x00" in text:
            raise ConversationError("invalid", "text: must not contain NUL characters", "text")
        return text

    # -- canned replies ---------------------------------------------------------------------------

    def canned_replies(self) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return [{"id": c.id, "title": c.title, "zh": c.text_zh, "en": c.text_en, "updated_by": c.updated_by,
                     "updated_at": iso(c.updated_at)}
                    for c in session.execute(select(CannedReply).order_by(CannedReply.title)).scalars()]

    def save_canned_reply(self, member: StaffMember, title: str, zh: str, en: str,
                          reply_id: int | None = None) -> dict[str, Any]:
        title, zh, en = (title or "").strip(), (zh or "").strip(), (en or "").strip()
        for name, value, limit in (("title", title, 80), ("zh", zh, MAX_REPLY_CHARS), ("en", en, MAX_REPLY_CHARS)):
            if not value or len(value) > limit or "\x00" in value:
                raise ConversationError("invalid", f"{name}: 1-{limit} characters", name)
        with self.db.transaction() as session:
            if reply_id is None:
                row = CannedReply(title=title, text_zh=zh, text_en=en, updated_by=member.username,
                                  updated_at=self.clock())
                session.add(row)
            else:
                found = session.get(CannedReply, reply_id)
                if found is None:
                    raise ConversationError("not_found", f"no canned reply {reply_id}")
                row = found
                row.title, row.text_zh, row.text_en = title, zh, en
                row.updated_by, row.updated_at = member.username, self.clock()
            session.flush()
            StaffDirectory.audit(session, member.username, "canned.saved", str(row.id), {"title": title})
            return {"id": row.id, "title": title, "zh": zh, "en": en}

    def delete_canned_reply(self, member: StaffMember, reply_id: int) -> None:
        with self.db.transaction() as session:
            row = session.get(CannedReply, reply_id)
            if row is None:
                raise ConversationError("not_found", f"no canned reply {reply_id}")
            session.delete(row)
            StaffDirectory.audit(session, member.username, "canned.deleted", str(reply_id))

    # -- the citizen's side ----------------------------------------------------------------------

    def owns(self, conversation_id: str, channel: str, user_id: str) -> bool:
        with self.db.read() as session:
            row = session.execute(select(C.channel, C.user_id).where(C.id == conversation_id)).first()
        return row is not None and tuple(row) == (channel, user_id)

    def turns_after(self, conversation_id: str, after_id: int = 0, channel: str | None = None,
                    user_id: str | None = None) -> dict[str, Any] | None:
        """New turns since ``after_id`` plus the state of the handoff, as the citizen sees it
        (private notes never included). None when unknown or not this (channel, user)'s."""
        now = self.clock()
        with self.db.read() as session:
            conv = session.get(Conversation, conversation_id)
            if conv is None or (channel is not None and conv.channel != channel) or \
                    (user_id is not None and conv.user_id != user_id):
                return None
            turns = session.execute(select(Turn.__table__).where(
                T.conversation_id == conv.id, T.id > after_id, T.role != "note").order_by(T.id)).all()
            votes = dict(session.execute(select(Feedback.turn_id, Feedback.value)
                                         .where(Feedback.conversation_id == conv.id)).all())
            views = []
            for turn in turns:
                view = turn_view(turn, conv.language, self.kb)
                if turn.role == "user" and turn.client_message_id:
                    # the widget's outbox drops a message the server already has (its response was lost)
                    view["client_message_id"] = turn.client_message_id
                if turn.id in votes:
                    view["feedback"] = votes[turn.id]
                views.append(view)
            on_duty = self._on_duty(session)
            info = None
            if conv.handoff_id is not None:
                row = session.execute(select(Handoff.__table__).where(H.id == conv.handoff_id)).one()
                position = self.conversations.queue_position(session, row)
                agent_name = session.execute(select(Agent.display_name).where(
                    Agent.username == row.claimed_by)).scalar() if row.claimed_by else None
                # the citizen sees the agent's display name, never the login name
                info = {"id": row.id, "status": "claimed" if row.claimed_by else "waiting",
                        "priority": row.priority, "reason": row.reason, "queue_position": position,
                        "agent": agent_name, "estimated_wait_seconds": self.estimate_wait(session, position)}
            callback = session.execute(select(CallbackTicket).where(CallbackTicket.conversation_id == conv.id)
                                       .order_by(CallbackTicket.id.desc()).limit(1)).scalar()
            open_now = self.hours.is_open(now)
            next_open = None if open_now else self.hours.next_open(now)
            return {"conversation_id": conv.id, "status": conv.status, "language": conv.language,
                    "handoff": info, "agents_on_duty": on_duty, "turns": views,
                    "last_id": max([after_id] + [t.id for t in turns]),
                    "service": {"open_now": open_now, "next_open": next_open.isoformat() if next_open else None,
                                "hours": self.hours.describe(), "timezone": self.settings.timezone},
                    "callback": {"id": callback.id, "phone": callback.phone_masked, "status": callback.status}
                    if callback else None,
                    "rating_due": self._rating_due(session, conv)}

    def _rating_due(self, session: Session, conv: Conversation) -> dict[str, Any] | None:
        """The last ticket an agent resolved in this conversation, while it has no rating."""
        row = session.execute(select(H.id, H.closed_by).where(H.conversation_id == conv.id, H.outcome == "resolved")
                              .order_by(H.closed_at.desc()).limit(1)).first()
        if row is None or conv.status in WITH_PERSON:
            return None
        if session.execute(select(Rating.id).where(Rating.handoff_id == row.id)).first():
            return None
        name = session.execute(select(Agent.display_name).where(Agent.username == row.closed_by)).scalar()
        return {"handoff_id": row.id, "agent": name}

    def feedback(self, conversation_id: str, turn_id: int, value: str, reason: str | None = None) -> dict[str, Any]:
        if value not in {"up", "down"}:
            raise ConversationError("invalid", "value: must be 'up' or 'down'", "value")
        if reason is not None and (value != "down" or reason not in FEEDBACK_REASONS):
            raise ConversationError("invalid", f"reason: one of {', '.join(FEEDBACK_REASONS)}, with 'down' only",
                                    "reason")
        with self.db.transaction() as session:
            turn = session.get(Turn, turn_id)
            if turn is None or turn.conversation_id != conversation_id:
                raise ConversationError("not_found", f"turn_id: no turn {turn_id} in this conversation", "turn_id")
            if turn.role != "bot":
                raise ConversationError("invalid", "turn_id: only bot answers take feedback", "turn_id")
            row = session.execute(select(Feedback).where(Feedback.turn_id == turn_id)).scalar_one_or_none()
            if row is None:
                session.add(Feedback(turn_id=turn_id, conversation_id=conversation_id, entry_id=turn.entry_id,
                                     value=value, reason=reason, created_at=self.clock()))
            else:
                row.value, row.reason, row.created_at = value, reason, self.clock()
            return {"turn_id": turn_id, "value": value, "reason": reason, "entry_id": turn.entry_id}

    def rate(self, conversation_id: str, handoff_id: int, score: int, comment: str = "") -> dict[str, Any]:
        if not isinstance(score, int) or not 1 <= score <= 5:
            raise ConversationError("invalid", "score: an integer from 1 to 5", "score")
        with self.db.transaction() as session:
            row = session.execute(select(H.conversation_id, H.outcome, H.closed_by).where(H.id == handoff_id)).first()
            if row is None or row.conversation_id != conversation_id:
                raise ConversationError("not_found", f"handoff_id: no handoff {handoff_id} in this conversation",
                                        "handoff_id")
            if row.outcome != "resolved":
                raise ConversationError("conflict", "only a conversation an agent resolved can be rated")
            if session.execute(select(Rating.id).where(Rating.handoff_id == handoff_id)).first():
                raise ConversationError("conflict", "this conversation was already rated")
            session.execute(insert(Rating).values(handoff_id=handoff_id, conversation_id=conversation_id,
                                                  agent=row.closed_by, score=score, comment=(comment or "")[:1000],
                                                  created_at=self.clock()))
        return {"handoff_id": handoff_id, "score": score}

    # -- callbacks ------------------------------------------------------------------------------

    def leave_callback(self, phone: str, conversation_id: str | None = None, name: str | None = None,
                       note: str = "", language: str = "zh") -> dict[str, Any]:
        number = normalise_phone(phone)
        now = self.clock()
        digest = self.vault.lookup_hash(number)
        with self.db.transaction() as session:
            handoff_id = None
            if conversation_id:
                conv = session.get(Conversation, conversation_id)
                if conv is None:
                    raise ConversationError("not_found", f"conversation_id: no conversation {conversation_id!r}",
                                            "conversation_id")
                handoff_id = conv.handoff_id
            open_for_number = session.execute(select(func.count(CallbackTicket.id)).where(
                CallbackTicket.phone_hash == digest, CallbackTicket.status == "open")).scalar() or 0
            if open_for_number >= self.limits.callbacks_per_phone:
                raise ConversationError("limited", "phone: this number already has callback requests waiting",
                                        "phone")
            ticket = CallbackTicket(conversation_id=conversation_id, handoff_id=handoff_id,
                                    phone_masked=mask_phone(number), phone_enc=self.vault.encrypt(number),
                                    phone_hash=digest, name=(name or None), note=self.vault.protect(note or "")[0],
                                    language="en" if language == "en" else "zh", status="open", created_at=now,
                                    due_at=now + dt.timedelta(hours=self.settings.callback_due_hours))
            session.add(ticket)
            session.flush()
            out = ticket.to_dict()
            self.outbox.record(session, [CallbackRequested(conversation_id, callback=out)], now)
            return out

    def callbacks(self, status: str | None = "open") -> list[dict[str, Any]]:
        with self.db.read() as session:
            query = select(CallbackTicket).order_by(CallbackTicket.created_at, CallbackTicket.id)
            if status:
                query = query.where(CallbackTicket.status == status)
            now = self.clock()
            out = []
            for ticket in session.execute(query).scalars():
                item = ticket.to_dict()
                item["overdue"] = ticket.status == "open" and ticket.due_at is not None and ticket.due_at < now
                out.append(item)
            return out

    def _callbacks_by_conversation(self, session: Session, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not conversation_ids:
            return {}
        rows = session.execute(select(CallbackTicket).where(
            CallbackTicket.conversation_id.in_(conversation_ids), CallbackTicket.status == "open")).scalars()
        return {r.conversation_id: r.to_dict() for r in rows if r.conversation_id is not None}

    def reveal_phone(self, ticket_id: int, member: StaffMember) -> str:
        """The full number, for the agent about to call; every reveal is in the audit log."""
        with self.db.transaction() as session:
            ticket = session.get(CallbackTicket, ticket_id)
            if ticket is None:
                raise ConversationError("not_found", f"no callback ticket {ticket_id}")
            StaffDirectory.audit(session, member.username, "callback.phone_revealed", str(ticket_id))
            return self.vault.decrypt(ticket.phone_enc)

    def callback_done(self, ticket_id: int, member: StaffMember) -> dict[str, Any]:
        now = self.clock()
        with self.db.transaction() as session:
            ticket = session.get(CallbackTicket, ticket_id)
            if ticket is None:
                raise ConversationError("not_found", f"no callback ticket {ticket_id}")
            ticket.status, ticket.handled_by, ticket.handled_at = "done", member.username, now
            out = ticket.to_dict()
            self.outbox.record(session, [CallbackDone(ticket.conversation_id, callback=out,
                                                      agent=member.username)], now)
            return out


def _stored_from_row(row: Row[Any]) -> StoredTurn:
    return StoredTurn(row.id, row.seq, row.role, row.text, row.created_at, row.intent, row.entry_id, row.score,
                      row.payload or {})


__all__ = ["Desk", "OpeningHours", "normalise_phone", "turn_view"]
