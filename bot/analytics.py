"""What the hotline's people decide from: volume, deflection, answers, handoffs, agents, staffing.

Everything is read from the tables the conversation service already writes (no
schema of its own) with SQL aggregates (``COUNT``/``GROUP BY``/``EXISTS``) that run
unchanged on SQLite and PostgreSQL. Only two things are finished in Python,
because SQLite has no percentile function: wait / handle-time percentiles and
histograms (over one row per handoff in the range), and the overlap of duty
periods with each hour (one row per duty period).

Time: the range is ``[start, end)`` in naive UTC like every stored time; hour and
day buckets are in the desk's time zone (``desk.timezone``) at the offset it has
at ``start`` (Asia/Shanghai has no daylight saving time). Numbers computed "as of
``end``": a handoff created after the range does not un-deflect a conversation
that started in it, so a past week's numbers do not change later.

Definitions (also in the README, section "Dashboard and metrics"):

- *bot response*: a bot turn directly after a citizen's turn (``seq`` + 1): the first
  reply to one message; its ``payload.action`` says what the bot did.
- *deflected conversation*: started in the range, has at least one citizen message,
  and before ``end`` had no handoff ticket and no callback request.
- *served conversation*: deflected, and at least one bot response was an answer,
  and the last answer was not rated 👎, and the same citizen (channel + user) was not
  answered the same entry again within 24 h after any answer in it.
- *wait*: handoff created → first claim. *Handle time*: claim → close (resolved, returned, or
  abandoned by a citizen who started a new conversation). *Abandoned*: closed as ``abandoned`` without ever
  being claimed.
- *service level*: handoffs claimed within ``service_level_seconds`` ÷ (claimed +
  abandoned) handoffs created in the range.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from bot.conversations.privacy import mask_names
from bot.db import DEADLINE_GRACE, Database
from bot.intents import FAQ_INTENT
from bot.models import CallbackTicket, Conversation, DutyPeriod, Feedback, Handoff, Turn, utcnow

# Core tables as Any: SQLAlchemy types their columns and result rows as `object`; tests check the rows.
C: Any = Conversation.__table__
T: Any = Turn.__table__
H: Any = Handoff.__table__
F: Any = Feedback.__table__
CB: Any = CallbackTicket.__table__
D: Any = DutyPeriod.__table__

REASONS = ("user_request", "low_confidence", "emergency", "complaint")
QUESTION_ACTIONS = ("answer", "did_you_mean", "rephrase", "not_covered", "handoff", "ask_region",
                    "policy_changed", "contact")  # a response to something asked (not smalltalk or the menu)
WAIT_BUCKETS = (15, 30, 60, 120, 300, 600)  # seconds: the wait histogram's upper edges (last: more)
REPEAT_WINDOW = dt.timedelta(hours=24)
DEFAULT_HANDLE_SECONDS = 300.0  # staffing before any ticket was handled: a stated assumption


@dataclass(frozen=True)
class Filters:
    """Optional narrowing. ``category`` keeps conversations in which the bot offered or answered an
    entry of that category (entry ids are ``<category>.<name>``); entry tables also keep only it."""

    channel: str | None = None
    language: str | None = None
    category: str | None = None
    region: str | None = None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least q of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


# -- Erlang C ------------------------------------------------------------------------------------

def erlang_c(traffic: float, agents: int) -> float:
    """P(wait > 0) in an M/M/N queue offered ``traffic`` erlangs (arrival rate × mean handle time).
    1.0 when the agents cannot keep up (N ≤ A). Computed with the Erlang B recursion, which stays
    exact for hundreds of agents where factorials overflow."""
    if agents <= 0:
        return 1.0
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return agents * blocking / (agents - traffic * (1 - blocking))


def service_level(arrivals_per_hour: float, handle_seconds: float, agents: int, target_seconds: float) -> float:
    """Share of arrivals answered within ``target_seconds``: 1 − C(N, A)·e^{−(N−A)·t/AHT}."""
    traffic = arrivals_per_hour * handle_seconds / 3600.0
    if traffic <= 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    return 1.0 - erlang_c(traffic, agents) * math.exp(-(agents - traffic) * target_seconds / handle_seconds)


def average_speed_of_answer(arrivals_per_hour: float, handle_seconds: float, agents: int) -> float:
    traffic = arrivals_per_hour * handle_seconds / 3600.0
    if agents <= traffic:
        return math.inf
    return erlang_c(traffic, agents) * handle_seconds / (agents - traffic)


def agents_needed(arrivals_per_hour: float, handle_seconds: float, target: float, target_seconds: float,
                  limit: int = 10_000) -> int:
    """The fewest agents whose Erlang C service level reaches ``target`` (0 when nobody arrives)."""
    if arrivals_per_hour <= 0:
        return 0
    traffic = arrivals_per_hour * handle_seconds / 3600.0
    agents = max(1, math.floor(traffic) + 1)
    while agents < limit and service_level(arrivals_per_hour, handle_seconds, agents, target_seconds) < target:
        agents += 1
    return agents


# -- the metrics ---------------------------------------------------------------------------------

class Analytics:
    """Read-only: every method is one ``db.read()``. ``entries`` returns the KB's entry ids (for
    "entries never asked"); ``clock`` is "now" for open/overdue callbacks and open duty periods."""

    def __init__(self, db: Database, *, timezone: str = "Asia/Shanghai",
                 entries: Callable[[], Iterable[str]] = lambda: (), clock: Callable[[], dt.datetime] = utcnow,
                 service_level_target: float = 0.8, service_level_seconds: float = 60.0,
                 query_seconds: float = 30.0):
        self.db = db
        self.zone = ZoneInfo(timezone)
        self.entries = entries
        self.clock = clock
        self.target = service_level_target
        self.target_seconds = service_level_seconds
        self.query_seconds = query_seconds

    # -- helpers ----------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A read transaction allowed ``query_seconds``: a quarter's aggregates take longer than the
        2 s a citizen's message may (``db.statement_timeout``); the database raises the server's
        limit for this transaction only."""
        with self.db.read(timeout=self.query_seconds + DEADLINE_GRACE) as session:
            yield session

    def offset(self, at: dt.datetime) -> dt.timedelta:
        """The desk time zone's UTC offset at the naive-UTC moment ``at``."""
        return at.replace(tzinfo=dt.timezone.utc).astimezone(self.zone).utcoffset() or dt.timedelta()

    def local_day_range(self, first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """Local calendar days first..last (inclusive) as a naive-UTC [start, end)."""
        start = dt.datetime.combine(first, dt.time(), self.zone).astimezone(dt.timezone.utc).replace(tzinfo=None)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), self.zone)
        return start, end.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def _hour(self, session: Session, column: Any, offset: dt.timedelta) -> Any:
        """``YYYY-MM-DD HH`` of ``column`` in local time, on either database."""
        minutes = int(offset.total_seconds() // 60)
        if session.get_bind().dialect.name == "postgresql":
            return func.to_char(column + offset, "YYYY-MM-DD HH24")
        return func.strftime("%Y-%m-%d %H", column, f"{minutes:+d} minutes")

    def _hours(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """The local hour labels of [start, end)."""
        offset = self.offset(start)
        cursor, labels = (start + offset).replace(minute=0, second=0, microsecond=0), []
        while cursor - offset < end:
            labels.append(cursor.strftime("%Y-%m-%d %H"))
            cursor += dt.timedelta(hours=1)
        return labels

    @staticmethod
    def _plus(session: Session, column: Any, delta: dt.timedelta) -> Any:
        if session.get_bind().dialect.name == "postgresql":
            return column + delta
        return func.datetime(column, f"{int(delta.total_seconds()):+d} seconds")

    @staticmethod
    def _conversation_filters(filters: Filters, conv: Any = C) -> list[Any]:
        clauses: list[Any] = []
        if filters.channel:
            clauses.append(conv.c.channel == filters.channel)
        if filters.language:
            clauses.append(conv.c.language == filters.language)
        if filters.region:
            clauses.append(conv.c.region == filters.region)
        if filters.category:
            t = aliased(T)
            clauses.append(exists().where(t.c.conversation_id == conv.c.id, t.c.role == "bot",
                                          t.c.entry_id.like(f"{filters.category}.%")))
        return clauses

    @staticmethod
    def _action(turns: Any = T) -> Any:
        return turns.c.payload["action"].as_string()

    def _responses(self, start: dt.datetime, end: dt.datetime, filters: Filters) -> Any:
        """(bot turn, user turn) pairs: the first bot reply to each citizen message in the range."""
        b, u = aliased(T, name="b"), aliased(T, name="u")
        joined = b.join(u, and_(u.c.conversation_id == b.c.conversation_id, u.c.seq == b.c.seq - 1,
                                u.c.role == "user")).join(C, C.c.id == b.c.conversation_id)
        where = [b.c.role == "bot", b.c.created_at >= start, b.c.created_at < end,
                 *self._conversation_filters(filters)]
        return b, u, joined, where

    # -- the report --------------------------------------------------------------------------------

    def report(self, start: dt.datetime, end: dt.datetime, filters: Filters | None = None,
               top: int = 20) -> dict[str, Any]:
        filters = filters or Filters()
        return {"range": {"start": start.isoformat() + "Z", "end": end.isoformat() + "Z",
                          "timezone": str(self.zone), "utc_offset_minutes":
                              int(self.offset(start).total_seconds() // 60)},
                "filters": {k: v for k, v in vars(filters).items() if v},
                "volume": self.volume(start, end, filters),
                "outcomes": self.outcomes(start, end, filters),
                "answers": self.answers(start, end, filters, top),
                "handoffs": self.handoffs(start, end, filters),
                "agents": self.agents(start, end),
                "staffing": self.staffing(start, end, filters)}

    def volume(self, start: dt.datetime, end: dt.datetime, filters: Filters) -> dict[str, Any]:
        offset = self.offset(start)
        conv_where = [C.c.created_at >= start, C.c.created_at < end, *self._conversation_filters(filters)]
        user_where = [T.c.role == "user", T.c.created_at >= start, T.c.created_at < end,
                      *self._conversation_filters(filters)]
        turns_conv = T.join(C, C.c.id == T.c.conversation_id)
        with self._read() as s:
            hour = self._hour(s, C.c.created_at, offset)
            conversations: Sequence[Any] = s.execute(select(hour.label("h"), C.c.channel, func.count()).where(*conv_where)
                                      .group_by(hour, C.c.channel)).all()
            mhour = self._hour(s, T.c.created_at, offset)
            messages: Sequence[Any] = s.execute(select(mhour.label("h"), C.c.channel, func.count()).select_from(turns_conv)
                                 .where(*user_where).group_by(mhour, C.c.channel)).all()
            by_language = s.execute(select(C.c.language, func.count()).select_from(turns_conv)
                                    .where(*user_where).group_by(C.c.language)).all()
            citizen = C.c.channel + literal(":") + C.c.user_id
            active = s.execute(select(func.count(func.distinct(citizen))).select_from(turns_conv)
                               .where(*user_where)).scalar() or 0
            # Conversations are only ever created by a citizen's message: one started before the range
            # (this one, or an earlier one of the same channel + user) means they wrote before.
            c2 = aliased(C)
            earlier = exists().where(c2.c.channel == C.c.channel, c2.c.user_id == C.c.user_id,
                                     c2.c.created_at < start)
            returning = s.execute(select(func.count(func.distinct(citizen))).select_from(turns_conv)
                                  .where(*user_where, earlier)).scalar() or 0
        hourly: dict[str, dict[str, Any]] = {}
        for label in self._hours(start, end):  # every hour of the range, quiet ones too
            hourly[label] = {"hour": label, "conversations": {}, "messages": {}}
        for label, channel, count in conversations:
            hourly.setdefault(label, {"hour": label, "conversations": {}, "messages": {}})["conversations"][channel] = count
        for label, channel, count in messages:
            hourly.setdefault(label, {"hour": label, "conversations": {}, "messages": {}})["messages"][channel] = count
        daily: dict[str, dict[str, int]] = {}
        for row in hourly.values():
            day = daily.setdefault(row["hour"][:10], {"conversations": 0, "messages": 0})
            day["conversations"] += sum(row["conversations"].values())
            day["messages"] += sum(row["messages"].values())
        return {"hourly": [hourly[k] for k in sorted(hourly)],
                "daily": [{"day": k, **v} for k, v in sorted(daily.items())],
                "conversations": sum(c for _, _, c in conversations),
                "messages": sum(c for _, _, c in messages),
                "messages_by_language": dict(by_language),
                "channels": sorted({c for _, c, _ in conversations} | {c for _, c, _ in messages}),
                "citizens": {"active": active, "new": active - returning, "returning": returning}}

    def outcomes(self, start: dt.datetime, end: dt.datetime, filters: Filters) -> dict[str, Any]:
        """Deflection and "served" over conversations started in the range (definitions: module doc)."""
        offset = self.offset(start)
        asked = exists().where(T.c.conversation_id == C.c.id, T.c.role == "user")
        handed = exists().where(H.c.conversation_id == C.c.id, H.c.created_at < end)
        callback = exists().where(CB.c.conversation_id == C.c.id, CB.c.created_at < end)
        base = [C.c.created_at >= start, C.c.created_at < end, asked, *self._conversation_filters(filters)]

        answer = self._action(T) == "answer"
        answered = exists().where(T.c.conversation_id == C.c.id, T.c.role == "bot", answer, T.c.created_at < end)
        last, fb = aliased(T, name="last"), aliased(F, name="fb")
        later = aliased(T, name="later")
        last_seq = select(func.max(later.c.seq)).where(
            later.c.conversation_id == last.c.conversation_id, later.c.role == "bot",
            self._action(later) == "answer", later.c.created_at < end).correlate(last).scalar_subquery()
        disliked = exists().select_from(last.join(fb, fb.c.turn_id == last.c.id)).where(
            last.c.conversation_id == C.c.id, last.c.seq == last_seq, fb.c.value == "down", fb.c.created_at < end)
        a1, a2, c2 = aliased(T, name="a1"), aliased(T, name="a2"), aliased(C, name="c2")
        with self._read() as s:
            # Joined the way the indexes lead: this conversation's answers (turns by conversation),
            # the citizen's conversations (channel + user), their answers (turns by conversation).
            repeated = exists().select_from(
                a1.join(c2, and_(c2.c.channel == C.c.channel, c2.c.user_id == C.c.user_id))
                .join(a2, and_(a2.c.conversation_id == c2.c.id, a2.c.entry_id == a1.c.entry_id))).where(
                a1.c.conversation_id == C.c.id, a1.c.role == "bot", self._action(a1) == "answer",
                # as of the range's end: a repeat the next day changed a closed day's "served" afterwards
                a1.c.created_at < end, a2.c.role == "bot", self._action(a2) == "answer", a2.c.created_at < end,
                a2.c.created_at > a1.c.created_at, a2.c.created_at <= self._plus(s, a1.c.created_at, REPEAT_WINDOW))
            day = func.substr(self._hour(s, C.c.created_at, offset), 1, 10)
            # One pass over the range's conversations: each condition summed per day. "served" is
            # only evaluated for deflected ones (CASE stops at the first true branch).
            is_deflected = and_(~handed, ~callback)
            rows = s.execute(select(
                day, func.count(),
                func.sum(case((is_deflected, 1), else_=0)),
                func.sum(case((~is_deflected, 0), (and_(answered, ~disliked, ~repeated), 1), else_=0)),
                func.sum(case((handed, 1), else_=0)),
                func.sum(case((callback, 1), else_=0))).where(*base).group_by(day)).all()
        started_by_day = {r[0]: r[1] for r in rows}
        deflected_by_day = {r[0]: int(r[2] or 0) for r in rows}
        served_by_day = {r[0]: int(r[3] or 0) for r in rows}
        with_handoff, with_callback = sum(int(r[4] or 0) for r in rows), sum(int(r[5] or 0) for r in rows)
        started = sum(started_by_day.values())
        n_deflected, n_served = sum(deflected_by_day.values()), sum(served_by_day.values())
        trend = [{"day": d, "conversations": n, "deflected": deflected_by_day.get(d, 0),
                  "served": served_by_day.get(d, 0),
                  "deflection_rate": _rate(deflected_by_day.get(d, 0), n), "served_rate": _rate(served_by_day.get(d, 0), n)}
                 for d, n in sorted(started_by_day.items())]
        return {"conversations": started, "deflected": n_deflected, "served": n_served,
                "with_handoff": with_handoff, "with_callback": with_callback,
                "deflection_rate": _rate(n_deflected, started), "served_rate": _rate(n_served, started),
                "trend": trend}

    def answers(self, start: dt.datetime, end: dt.datetime, filters: Filters, top: int = 20) -> dict[str, Any]:
        b, u, joined, where = self._responses(start, end, filters)
        action = self._action(b)
        entry_filter = [b.c.entry_id.like(f"{filters.category}.%")] if filters.category else []
        with self._read() as s:
            by_action: dict[str, int] = dict(s.execute(select(action, func.count()).select_from(joined).where(*where)
                                       .group_by(action)).all())
            top_entries: Sequence[Any] = s.execute(select(b.c.entry_id, func.count().label("n")).select_from(joined)
                                    .where(*where, *entry_filter, action == "answer")
                                    .group_by(b.c.entry_id).order_by(func.count().desc(), b.c.entry_id)
                                    .limit(top)).all()
            unanswered: Sequence[Any] = s.execute(select(u.c.text, func.count().label("n"), func.max(u.c.created_at))
                                   .select_from(joined)
                                   .where(*where, ~u.c.text.startswith("/"),
                                          or_(action.in_(("rephrase", "not_covered")),
                                              and_(action == "handoff", b.c.intent == FAQ_INTENT)))
                                   .group_by(u.c.text).order_by(func.count().desc(), u.c.text).limit(top)).all()
            fb_turn = aliased(T, name="ft")
            fb_where = [fb_turn.c.created_at >= start, fb_turn.c.created_at < end,
                        *self._conversation_filters(filters)]
            if filters.category:
                fb_where.append(F.c.entry_id.like(f"{filters.category}.%"))
            votes: Sequence[Any] = s.execute(select(F.c.entry_id, F.c.value, func.count())
                              .select_from(F.join(fb_turn, fb_turn.c.id == F.c.turn_id)
                                           .join(C, C.c.id == F.c.conversation_id))
                              .where(*fb_where).group_by(F.c.entry_id, F.c.value)).all()
            asked_entries: set[str] = set(s.execute(select(func.distinct(T.c.entry_id)).where(
                T.c.role == "bot", self._action(T) == "answer", T.c.created_at >= start, T.c.created_at < end,
                T.c.entry_id.isnot(None))).scalars())
        questions = sum(n for a, n in by_action.items() if a in QUESTION_ACTIONS)
        feedback: dict[str, dict[str, int]] = defaultdict(lambda: {"up": 0, "down": 0})
        for entry, value, count in votes:
            feedback[entry][value] = count  # None: a rated turn with no entry (did-you-mean, menu, ...)
        known = [e for e in self.entries() if not filters.category or e.startswith(filters.category + ".")]
        return {"responses": sum(by_action.values()), "questions": questions, "by_action": by_action,
                "answer_rate": _rate(by_action.get("answer", 0), questions),
                "did_you_mean_rate": _rate(by_action.get("did_you_mean", 0), questions),
                "rephrase_rate": _rate(by_action.get("rephrase", 0), questions),
                "not_covered_rate": _rate(by_action.get("not_covered", 0), questions),
                "top_entries": [{"entry_id": e, "count": n, "up": feedback.get(e, {}).get("up", 0),
                                 "down": feedback.get(e, {}).get("down", 0)} for e, n in top_entries],
                "feedback": [{"entry_id": e, **v} for e, v in sorted(feedback.items(), key=lambda kv: -kv[1]["down"])],
                # names masked as in the KB inbox (numbers are masked at rest; "我叫王小明" was shown as typed)
                "unanswered": [{"text": mask_names(t), "count": n, "last": last.isoformat() + "Z"}
                               for t, n, last in unanswered],
                "never_asked": sorted(set(known) - asked_entries)}

    def _handoff_rows(self, s: Session, start: dt.datetime, end: dt.datetime, filters: Filters) -> Any:
        return s.execute(select(H.c.id, H.c.reason, H.c.created_at, H.c.claimed_at, H.c.closed_at, H.c.outcome,
                                H.c.claimed_by, H.c.closed_by)
                         .select_from(H.join(C, C.c.id == H.c.conversation_id))
                         .where(H.c.created_at >= start, H.c.created_at < end,
                                *self._conversation_filters(filters))).all()

    def handoffs(self, start: dt.datetime, end: dt.datetime, filters: Filters) -> dict[str, Any]:
        now = self.clock()
        with self._read() as s:
            by_reason: dict[str, int] = dict(s.execute(select(H.c.reason, func.count()).select_from(H.join(C, C.c.id == H.c.conversation_id))
                                       .where(H.c.created_at >= start, H.c.created_at < end,
                                              *self._conversation_filters(filters)).group_by(H.c.reason)).all())
            rows = self._handoff_rows(s, start, end, filters)
            callbacks_open = s.execute(select(func.count()).where(CB.c.status == "open", CB.c.created_at < end)
                                       .select_from(CB)).scalar() or 0
            overdue = s.execute(select(func.count()).select_from(CB).where(
                CB.c.status == "open", CB.c.created_at < end, CB.c.due_at < now)).scalar() or 0
            requested = s.execute(select(func.count()).select_from(CB).where(
                CB.c.created_at >= start, CB.c.created_at < end)).scalar() or 0
        waits = [(r.claimed_at - r.created_at).total_seconds() for r in rows if r.claimed_at is not None]
        # an agent's time with a citizen who then left (abandoned while claimed) is handling time too; a ticket
        # released back to the queue keeps its first claim's time but has no holder: its wait is no handling
        handle = [(r.closed_at - r.claimed_at).total_seconds() for r in rows
                  if r.claimed_at is not None and r.closed_at is not None
                  and (r.outcome in ("resolved", "returned") or r.outcome == "abandoned" and r.claimed_by is not None)]
        abandoned = sum(1 for r in rows if r.outcome == "abandoned" and r.claimed_at is None)
        within = sum(1 for w in waits if w <= self.target_seconds)
        histogram, edges = [], [0, *WAIT_BUCKETS]
        for low, high in zip(edges, [*WAIT_BUCKETS, None]):
            count = sum(1 for w in waits if w >= low and (high is None or w < high))
            histogram.append({"bucket": f"{low}-{high}s" if high else f"{low}s+", "count": count})
        return {"total": len(rows), "by_reason": {r: by_reason.get(r, 0) for r in REASONS} |
                {k: v for k, v in by_reason.items() if k not in REASONS},
                "claimed": len(waits), "abandoned": abandoned, "abandonment_rate": _rate(abandoned, len(rows)),
                "waiting_now": sum(1 for r in rows if r.claimed_at is None and r.closed_at is None),
                "wait_seconds": {"p50": percentile(waits, 0.5), "p90": percentile(waits, 0.9),
                                 "mean": _mean(waits), "histogram": histogram},
                "handle_seconds": {"p50": percentile(handle, 0.5), "p90": percentile(handle, 0.9),
                                   "mean": _mean(handle), "count": len(handle)},
                "service_level": {"target": self.target, "seconds": self.target_seconds,
                                  "achieved": _rate(within, len(waits) + abandoned)},
                "callbacks": {"requested": requested, "open": callbacks_open, "overdue": overdue}}

    def _duty(self, s: Session, start: dt.datetime, end: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime]]:
        """Duty periods clipped to the range; an open one lasts until its last heartbeat."""
        rows: Sequence[Any] = s.execute(select(D.c.agent, D.c.started_at, D.c.ended_at, D.c.last_seen)
                         .where(D.c.started_at < end, or_(D.c.ended_at.is_(None), D.c.ended_at > start))).all()
        out: list[tuple[str, dt.datetime, dt.datetime]] = []
        for agent, began, ended, seen in rows:
            stop = ended or min(seen, self.clock())
            a, b = max(began, start), min(stop, end)
            if b > a:
                out.append((agent, a, b))
        return out

    def agents(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        with self._read() as s:
            duty = self._duty(s, start, end)
            handled: dict[str, int] = dict(s.execute(select(H.c.closed_by, func.count()).where(
                H.c.closed_at >= start, H.c.closed_at < end, H.c.outcome.in_(("resolved", "returned")),
                H.c.closed_by.isnot(None)).group_by(H.c.closed_by)).all())
        hours: dict[str, float] = defaultdict(float)
        for agent, a, b in duty:
            hours[agent] += (b - a).total_seconds() / 3600
        people = sorted(set(hours) | set(handled))
        rows = [{"agent": p, "duty_hours": round(hours.get(p, 0.0), 2), "handled": handled.get(p, 0),
                 "per_duty_hour": round(handled.get(p, 0) / hours[p], 2) if hours.get(p) else None} for p in people]
        total_hours = sum(hours.values())
        return {"agents": rows, "duty_hours": round(total_hours, 2), "handled": sum(handled.values()),
                "per_duty_hour": round(sum(handled.values()) / total_hours, 2) if total_hours else None}

    def staffing(self, start: dt.datetime, end: dt.datetime, filters: Filters | None = None) -> dict[str, Any]:
        """Per local hour in the range: handoff arrivals, agents Erlang C recommends for the service-level
        target (with the range's mean handle time), and the agents actually on duty (mean headcount)."""
        filters = filters or Filters()
        offset = self.offset(start)
        with self._read() as s:
            hour = self._hour(s, H.c.created_at, offset)
            arrivals: dict[str, int] = dict(s.execute(select(hour, func.count()).select_from(H.join(C, C.c.id == H.c.conversation_id))
                                      .where(H.c.created_at >= start, H.c.created_at < end,
                                             *self._conversation_filters(filters)).group_by(hour)).all())
            handle = [(r.closed_at - r.claimed_at).total_seconds() for r in self._handoff_rows(s, start, end, filters)
                      if r.claimed_at and r.closed_at and r.outcome in ("resolved", "returned")]
            duty = self._duty(s, start, end)
        aht = _mean(handle) or DEFAULT_HANDLE_SECONDS
        on_duty: dict[str, float] = defaultdict(float)
        for _agent, a, b in duty:
            cursor = a
            while cursor < b:
                local = cursor + offset
                hour_start = local.replace(minute=0, second=0, microsecond=0) - offset
                step = min(b, hour_start + dt.timedelta(hours=1))
                on_duty[(hour_start + offset).strftime("%Y-%m-%d %H")] += (step - cursor).total_seconds() / 3600
                cursor = step
        rows = []
        for label in self._hours(start, end):
            n = arrivals.get(label, 0)
            need = agents_needed(n, aht, self.target, self.target_seconds)
            rows.append({"hour": label, "arrivals": n, "recommended": need,
                         "on_duty": round(on_duty.get(label, 0.0), 2),
                         "expected_service_level": round(service_level(n, aht, need, self.target_seconds), 3)
                         if n else None})
        return {"handle_seconds": round(aht, 1), "handle_from": "measured" if handle else "default",
                "target": self.target, "seconds": self.target_seconds, "hours": rows}

    def forecast(self, day: dt.date, weeks: int = 8) -> dict[str, Any]:
        """Next-day plan for local ``day``: per hour, the seasonal average of handoff arrivals and
        conversations at the same weekday and hour over the ``weeks`` weeks before it (days before the
        first recorded conversation do not count as zeros). With no same-weekday history, the average
        over every earlier day at that hour. A simple seasonal average, stated as such."""
        start, _ = self.local_day_range(day - dt.timedelta(days=7 * weeks), day)
        end, _ = self.local_day_range(day, day)
        offset = self.offset(end)
        with self._read() as s:
            first = s.execute(select(func.min(C.c.created_at))).scalar()
            h_hour = self._hour(s, H.c.created_at, offset)
            handoffs = s.execute(select(h_hour, func.count()).where(H.c.created_at >= start, H.c.created_at < end)
                                 .group_by(h_hour)).all()
            c_hour = self._hour(s, C.c.created_at, offset)
            conversations = s.execute(select(c_hour, func.count()).where(C.c.created_at >= start, C.c.created_at < end)
                                      .group_by(c_hour)).all()
            handle = [(r.closed_at - r.claimed_at).total_seconds() for r in self._handoff_rows(s, start, end, Filters())
                      if r.claimed_at and r.closed_at and r.outcome in ("resolved", "returned")]
        aht = _mean(handle) or DEFAULT_HANDLE_SECONDS
        first_day = (first + offset).date() if first else day
        days = [day - dt.timedelta(days=i) for i in range(1, 7 * weeks + 1)]
        days = [d for d in days if d >= first_day]
        same = [d for d in days if d.weekday() == day.weekday()]
        basis, method = (same, "same weekday") if same else (days, "all days")

        def average(rows: Iterable[Any]) -> dict[int, float]:
            wanted = {d.isoformat() for d in basis}
            sums: dict[int, int] = defaultdict(int)
            for label, count in rows:
                if label[:10] in wanted:
                    sums[int(label[11:13])] += count
            return {h: sums[h] / len(basis) for h in range(24)} if basis else {h: 0.0 for h in range(24)}

        expected_handoffs, expected_conversations = average(handoffs), average(conversations)
        hours = [{"hour": h, "conversations": round(expected_conversations[h], 2),
                  "handoffs": round(expected_handoffs[h], 2),
                  "recommended": agents_needed(expected_handoffs[h], aht, self.target, self.target_seconds)}
                 for h in range(24)]
        return {"day": day.isoformat(), "method": f"seasonal average ({method})", "history_days": len(basis),
                "handle_seconds": round(aht, 1), "target": self.target, "seconds": self.target_seconds,
                "hours": hours}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


__all__ = ["Analytics", "Filters", "agents_needed", "average_speed_of_answer", "erlang_c", "percentile",
           "service_level"]
