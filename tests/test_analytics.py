"""The dashboard's numbers on hand-built conversations whose right answers are known, on SQLite and
PostgreSQL; Erlang C against a published worked example.

The rows are written straight into the tables the conversation service writes (the metrics
read nothing else), so every definition in bot/analytics.py is pinned to a case built for it.
"""
from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import insert

from bot.analytics import (Analytics, Filters, agents_needed, average_speed_of_answer, erlang_c, percentile,
                           service_level)
from bot.conversations.desk import Desk
from bot.db import Database
from bot.models import CallbackTicket, Conversation, DutyPeriod, Feedback, Handoff, Turn
from tests.conftest import open_database

# Local day 2026-12-01 in Asia/Shanghai = UTC 2026-11-30 16:00 .. 2026-12-01 16:00.
DAY = dt.date(2026, 12, 1)
T0 = dt.datetime(2026, 12, 1, 1, 0)  # 09:00 local
NOW = dt.datetime(2026, 12, 1, 15, 0)  # 23:00 local: after every row of the day
ENTRIES = ["testing.where", "testing.cost", "vaccine.book"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+psycopg://", 1)
    database = open_database(url)
    database.upgrade()
    yield database
    database.dispose()


class Builder:
    """Writes one conversation's turns with consecutive seq numbers."""

    def __init__(self, db: Database):
        self.db = db
        self.turn_ids: dict[str, int] = {}

    def conversation(self, cid: str, at: dt.datetime, *turns, channel="web", user=None, language="zh",
                     region=None) -> None:
        with self.db.transaction() as s:
            s.execute(insert(Conversation).values(id=cid, channel=channel, user_id=user or cid, status="bot",
                                                  language=language, region=region, failures=0,
                                                  turn_count=len(turns), last_candidates=[], created_at=at,
                                                  updated_at=at))
            for seq, (minutes, role, text, action, entry, intent, *name) in enumerate(turns, start=1):
                turn_id = s.execute(insert(Turn).values(
                    conversation_id=cid, seq=seq, role=role, text=text, created_at=at + dt.timedelta(minutes=minutes),
                    entry_id=entry, intent=intent, payload={"action": action} if action else {})
                    .returning(Turn.id)).scalar_one()
                if name:
                    self.turn_ids[name[0]] = turn_id

    def handoff(self, cid: str, reason: str, at: dt.datetime, claimed: float | None = None, agent: str | None = None,
                closed: float | None = None, outcome: str | None = None, channel="web") -> None:
        with self.db.transaction() as s:
            s.execute(insert(Handoff).values(
                conversation_id=cid, reason=reason, priority=0 if reason == "emergency" else 1, channel=channel,
                user_id=cid, language="zh", question="q", candidates=[], kb_version="v1", created_at=at,
                claimed_by=agent, claimed_at=at + dt.timedelta(seconds=claimed) if claimed is not None else None,
                closed_at=at + dt.timedelta(seconds=closed) if closed is not None else None,
                closed_by=agent if outcome in ("resolved", "returned") else None, outcome=outcome))

    def feedback(self, turn: str, cid: str, entry: str, value: str) -> None:
        with self.db.transaction() as s:
            s.execute(insert(Feedback).values(turn_id=self.turn_ids[turn], conversation_id=cid, entry_id=entry,
                                              value=value, created_at=T0))

    def callback(self, cid: str | None, at: dt.datetime, status="open") -> None:
        with self.db.transaction() as s:
            s.execute(insert(CallbackTicket).values(
                conversation_id=cid, phone_masked="138****0000", phone_enc="x", phone_hash="h" + str(at), note="",
                language="zh", status=status, created_at=at, due_at=at + dt.timedelta(hours=4)))

    def duty(self, agent: str, start: dt.datetime, hours: float) -> None:
        with self.db.transaction() as s:
            end = start + dt.timedelta(hours=hours)
            s.execute(insert(DutyPeriod).values(agent=agent, started_at=start, ended_at=end, last_seen=end))


def user(minutes, text):
    return (minutes, "user", text, None, None, None)


def bot(minutes, action, entry=None, intent="faq", name=None):
    return (minutes, "bot", "…", action, entry, intent) + ((name,) if name else ())


def build_day(db: Database) -> None:
    b = Builder(db)
    h = dt.timedelta(hours=1)
    # u1 came the day before too: a returning citizen (its earlier conversation is outside the range).
    b.conversation("c0", T0 - 24 * h, user(0, "核酸在哪做"), bot(0, "answer", "testing.where"), user="u1")
    # c1: answered, 👍 -> deflected and served.
    b.conversation("c1", T0, user(0, "核酸在哪做"), bot(0, "answer", "testing.where", name="c1a"), user="u1")
    b.feedback("c1a", "c1", "testing.where", "up")
    # c2: answered but 👎 -> deflected, not served.
    b.conversation("c2", T0 + dt.timedelta(minutes=5), user(0, "核酸点"), bot(0, "answer", "testing.where", name="c2a"))
    b.feedback("c2a", "c2", "testing.where", "down")
    # c3 (wechat, en): did-you-mean, then the same entry answered again 2 h later -> not served.
    b.conversation("c3", T0 + dt.timedelta(minutes=10), user(0, "test price"), bot(0, "did_you_mean"),
                   user(1, "/faq testing.cost"), bot(1, "answer", "testing.cost"),
                   user(120, "how much is a test"), bot(120, "answer", "testing.cost"),
                   channel="wechat", language="en")
    # c4: rephrase, then a low-confidence handoff; claimed after 30 s, resolved 10 min later.
    b.conversation("c4", T0 + h, user(0, "怎么申请补贴"), bot(0, "rephrase"), user(1, "补贴申请流程"),
                   bot(1, "handoff", intent="faq"))
    b.handoff("c4", "low_confidence", T0 + h + dt.timedelta(minutes=1), claimed=30, agent="alice", closed=630,
              outcome="resolved")
    # c5 (en): asks for a person; claimed after 120 s, returned after 300 s of handling.
    b.conversation("c5", T0 + h, user(0, "human please"), bot(0, "handoff", intent="ask_human"), language="en")
    b.handoff("c5", "user_request", T0 + h, claimed=120, agent="bob", closed=420, outcome="returned")
    # c6 (wechat): emergency, two bot turns (only the first counts as the response), never claimed.
    b.conversation("c6", T0 + 2 * h, user(0, "喘不上气"), bot(0, "handoff", intent="emergency"),
                   bot(0, "handoff", intent="emergency"), channel="wechat", region="武汉")
    b.handoff("c6", "emergency", T0 + 2 * h, closed=1800, outcome="abandoned", channel="wechat")
    # c7: not covered, same text as c4's first question; leaves a callback request.
    b.conversation("c7", T0 + 2 * h, user(0, "怎么申请补贴"), bot(0, "not_covered"))
    b.callback("c7", T0 + 2 * h)
    b.callback(None, T0 - 48 * h, status="done")
    # c8: small talk only -> deflected, not served (never answered).
    b.conversation("c8", T0 + 3 * h, user(0, "你好"), bot(0, "smalltalk", intent="greet"))
    # c9: after the range: counted nowhere.
    b.conversation("c9", T0 + 20 * h, user(0, "核酸在哪做"), bot(0, "answer", "testing.where"))
    b.duty("alice", T0, 2)
    b.duty("bob", T0 + h, 1)


@pytest.fixture()
def analytics(db):
    build_day(db)
    return Analytics(db, entries=lambda: ENTRIES, clock=lambda: NOW)


def day_range(analytics: Analytics):
    return analytics.local_day_range(DAY, DAY)


def test_local_day_is_shanghai_midnight_to_midnight(analytics):
    assert day_range(analytics) == (dt.datetime(2026, 11, 30, 16), dt.datetime(2026, 12, 1, 16))


def test_deflection_and_served_follow_the_definitions(analytics):
    out = analytics.outcomes(*day_range(analytics), Filters())
    assert out["conversations"] == 8  # c1..c8
    assert out["deflected"] == 4  # c1 c2 c3 c8
    assert out["served"] == 1  # c1: c2 👎, c3 repeat within 24 h, c8 never answered
    assert (out["with_handoff"], out["with_callback"]) == (3, 1)
    assert out["deflection_rate"] == 0.5 and out["served_rate"] == 0.125
    assert out["trend"] == [{"day": "2026-12-01", "conversations": 8, "deflected": 4, "served": 1,
                             "deflection_rate": 0.5, "served_rate": 0.125}]


def test_a_handoff_after_the_range_does_not_undeflect_it(analytics, db):
    start, end = day_range(analytics)
    Builder(db).handoff("c1", "complaint", end + dt.timedelta(hours=1))
    assert analytics.outcomes(start, end, Filters())["deflected"] == 4
    assert analytics.outcomes(start, end + dt.timedelta(hours=2), Filters())["deflected"] == 3


def test_answer_rates_top_entries_feedback_unanswered(analytics):
    out = analytics.answers(*day_range(analytics), Filters())
    assert out["by_action"] == {"answer": 4, "did_you_mean": 1, "rephrase": 1, "handoff": 3, "not_covered": 1,
                                "smalltalk": 1}
    assert (out["responses"], out["questions"]) == (11, 10)
    assert (out["answer_rate"], out["did_you_mean_rate"], out["rephrase_rate"]) == (0.4, 0.1, 0.1)
    assert out["top_entries"] == [{"entry_id": "testing.cost", "count": 2, "up": 0, "down": 0},
                                  {"entry_id": "testing.where", "count": 2, "up": 1, "down": 1}]
    assert out["unanswered"][0]["text"] == "怎么申请补贴" and out["unanswered"][0]["count"] == 2
    assert [u["text"] for u in out["unanswered"]] == ["怎么申请补贴", "补贴申请流程"]
    assert out["feedback"] == [{"entry_id": "testing.where", "up": 1, "down": 1}]
    assert out["never_asked"] == ["vaccine.book"]


def test_handoff_reasons_waits_handle_abandonment_callbacks(analytics):
    out = analytics.handoffs(*day_range(analytics), Filters())
    assert out["total"] == 3
    assert out["by_reason"] == {"user_request": 1, "low_confidence": 1, "emergency": 1, "complaint": 0}
    assert (out["wait_seconds"]["p50"], out["wait_seconds"]["p90"]) == (30, 120)
    assert out["handle_seconds"]["mean"] == 450.0  # (600 + 300) / 2
    assert out["abandoned"] == 1 and out["abandonment_rate"] == pytest.approx(0.3333)
    assert out["service_level"]["achieved"] == pytest.approx(0.3333)  # 1 within 60 s of (2 claimed + 1 abandoned)
    assert [b["count"] for b in out["wait_seconds"]["histogram"]] == [0, 0, 1, 0, 1, 0, 0]  # 30 s in 30-60, 120 s in 120-300
    # c7's callback: open, due 4 h after 11:00 local -> overdue at 23:00; the older one is done.
    assert out["callbacks"] == {"requested": 1, "open": 1, "overdue": 1}


def test_an_agents_time_with_a_citizen_who_left_is_handling_time_not_an_abandonment(db):
    """A citizen who starts a new conversation while an agent has the ticket closes it as abandoned (after the
    claim): the agent's 15 minutes are handling time, and the citizen was served by a person, not left waiting."""
    build_day(db)
    Builder(db).handoff("c8", "user_request", T0 + dt.timedelta(hours=3), claimed=60, agent="alice", closed=960,
                        outcome="abandoned")
    # claimed, released back to the queue (no holder), then the citizen left: its wait is no handling time
    Builder(db).handoff("c7", "user_request", T0 + dt.timedelta(hours=3), claimed=30, agent=None, closed=3000,
                        outcome="abandoned")
    analytics = Analytics(db, entries=lambda: ENTRIES, clock=lambda: NOW)
    out = analytics.handoffs(*day_range(analytics), Filters())
    assert out["abandoned"] == 1 and out["claimed"] == 4  # still only c6, never claimed
    assert out["handle_seconds"]["count"] == 3 and out["handle_seconds"]["mean"] == 600.0  # (600 + 300 + 900) / 3
    # the wait promised to the next citizen uses the same handle time (it left c8's 15 minutes out: 450 s)
    with db.read() as session:
        assert Desk.handle_seconds(session) == 600.0


def test_volume_by_hour_channel_language_and_returning_citizens(analytics):
    out = analytics.volume(*day_range(analytics), Filters())
    assert out["conversations"] == 8 and out["messages"] == 11
    assert len(out["hourly"]) == 24 and out["hourly"][0]["hour"] == "2026-12-01 00"  # quiet hours too
    first = out["hourly"][9]
    assert first == {"hour": "2026-12-01 09", "conversations": {"web": 2, "wechat": 1},
                     "messages": {"web": 2, "wechat": 2}}
    assert out["messages_by_language"] == {"zh": 7, "en": 4}
    assert out["daily"] == [{"day": "2026-12-01", "conversations": 8, "messages": 11}]
    assert out["citizens"] == {"active": 8, "new": 7, "returning": 1}


def test_filters_narrow_every_metric(analytics):
    start, end = day_range(analytics)
    wechat = Filters(channel="wechat")
    assert analytics.outcomes(start, end, wechat)["conversations"] == 2
    assert analytics.outcomes(start, end, wechat)["deflected"] == 1
    assert analytics.handoffs(start, end, wechat)["by_reason"]["emergency"] == 1
    assert analytics.handoffs(start, end, wechat)["total"] == 1
    assert analytics.outcomes(start, end, Filters(language="en"))["conversations"] == 2
    assert analytics.outcomes(start, end, Filters(region="武汉"))["conversations"] == 1
    testing = analytics.outcomes(start, end, Filters(category="testing"))
    assert (testing["conversations"], testing["served"]) == (3, 1)
    assert analytics.answers(start, end, Filters(category="vaccine"))["top_entries"] == []
    assert analytics.answers(start, end, Filters(category="vaccine"))["never_asked"] == ["vaccine.book"]


def test_agents_duty_hours_and_tickets_per_hour(analytics):
    out = analytics.agents(*day_range(analytics))
    assert out["agents"] == [{"agent": "alice", "duty_hours": 2.0, "handled": 1, "per_duty_hour": 0.5},
                             {"agent": "bob", "duty_hours": 1.0, "handled": 1, "per_duty_hour": 1.0}]
    assert out["per_duty_hour"] == pytest.approx(0.67)


def test_staffing_per_hour_recommends_against_on_duty(analytics):
    out = analytics.staffing(*day_range(analytics), Filters())
    assert out["handle_seconds"] == 450.0 and out["handle_from"] == "measured"
    hours = {r["hour"]: r for r in out["hours"]}
    assert len(out["hours"]) == 24
    ten = hours["2026-12-01 10"]  # c4 + c5 arrived; alice and bob both on duty the whole hour
    assert ten["arrivals"] == 2 and ten["on_duty"] == 2.0
    # A = 0.25 erlang: one agent gives 1 - 0.25·e^(-0.75·60/450) = 77.4 % < 80 %, so two
    assert ten["recommended"] == agents_needed(2, 450.0, 0.8, 60.0) == 2
    assert hours["2026-12-01 09"]["on_duty"] == 1.0 and hours["2026-12-01 09"]["recommended"] == 0


def test_forecast_is_the_same_weekday_hour_average(db):
    b = Builder(db)
    tuesday = DAY  # 2026-12-01 is a Tuesday
    for weeks_ago, count in ((2, 4), (1, 2)):
        at = dt.datetime.combine(tuesday - dt.timedelta(weeks=weeks_ago), dt.time(2, 10))  # 10:10 local
        b.conversation(f"t{weeks_ago}", at, user(0, "x"))
        for i in range(count):
            b.handoff(f"t{weeks_ago}", "user_request", at + dt.timedelta(minutes=i))
    wednesday = dt.datetime.combine(tuesday - dt.timedelta(days=6), dt.time(2, 10))
    b.conversation("w", wednesday, user(0, "x"))
    for i in range(10):
        b.handoff("w", "user_request", wednesday + dt.timedelta(minutes=i))
    out = Analytics(db, clock=lambda: NOW).forecast(tuesday)
    assert out["method"] == "seasonal average (same weekday)" and out["history_days"] == 2
    assert out["hours"][10]["handoffs"] == 3.0  # (4 + 2) / 2; Wednesday's 10 not counted
    assert out["hours"][10]["conversations"] == 1.0
    assert out["hours"][9]["handoffs"] == 0.0 and out["hours"][9]["recommended"] == 0
    assert out["hours"][10]["recommended"] == agents_needed(3, 300.0, 0.8, 60.0)


# -- Erlang C ----------------------------------------------------------------------------------

def test_erlang_c_matches_the_published_worked_example():
    """Call Centre Helper, "How to calculate staffing with the Erlang C formula": 100 calls in 30 min,
    average handle time 180 s, target 80 % answered in 20 s. Traffic 10 erlangs; with 11 agents
    P(wait) = 68.21 %, service level 39.0 %, average speed of answer 122.8 s; 14 agents reach the
    target (13 give 79.6 %, just short) — the same values as the Erlang C tables (A = 10)."""
    per_hour = 200.0
    assert erlang_c(10.0, 11) == pytest.approx(0.6821, abs=5e-5)
    assert service_level(per_hour, 180, 11, 20) == pytest.approx(0.390, abs=5e-4)
    assert average_speed_of_answer(per_hour, 180, 11) == pytest.approx(122.8, abs=0.05)
    assert [round(erlang_c(10.0, n), 4) for n in (12, 13, 14)] == [0.4494, 0.2853, 0.1741]
    assert service_level(per_hour, 180, 13, 20) == pytest.approx(0.796, abs=5e-4)
    assert agents_needed(per_hour, 180, 0.8, 20) == 14


def test_erlang_c_edges():
    assert erlang_c(0, 3) == 0.0 and erlang_c(5, 5) == 1.0 and erlang_c(5, 3) == 1.0
    assert agents_needed(0, 300, 0.8, 60) == 0
    assert service_level(0, 300, 0, 60) == 1.0
    assert math.isinf(average_speed_of_answer(60, 60, 1))
    # hundreds of agents: no factorial overflow, and more agents never lower the service level
    assert 0.8 <= service_level(6000, 300, agents_needed(6000, 300, 0.8, 60), 60) <= 1.0


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([5, 1, 3], 0.5) == 3 and percentile([1, 2, 3, 4], 0.9) == 4 and percentile([7], 0.9) == 7


def test_a_closed_days_served_count_does_not_change_the_next_day(db):
    """Numbers are computed as of the range's end: the same citizen answered the same entry again at 01:00 the
    next day turned the day before's served conversation into a repeat afterwards (served 1 → 0)."""
    build = Builder(db)
    late = dt.datetime(2026, 12, 1, 15, 0)  # 23:00 in Shanghai on DAY
    build.conversation("a", late, user(0, "核酸在哪做"), bot(0, "answer", "testing.where"), user="u9")
    engine = Analytics(db, entries=lambda: [], clock=lambda: late + dt.timedelta(hours=1))
    before = engine.outcomes(*engine.local_day_range(DAY, DAY), Filters())["served"]
    build.conversation("b", late + dt.timedelta(hours=2), user(0, "核酸点在哪"), bot(0, "answer", "testing.where"),
                       user="u9")
    assert before == engine.outcomes(*engine.local_day_range(DAY, DAY), Filters())["served"] == 1


def test_a_directory_answer_counts_as_a_question(db):
    """README: questions are bot responses other than small talk and the topic menu; a contact (directory)
    answer was left out, so the answer rate read 1.0 instead of 0.5."""
    build = Builder(db)
    build.conversation("k", T0, user(0, "疾控中心电话多少"), bot(0, "contact", intent="contact"))
    build.conversation("m", T0, user(0, "核酸在哪做"), bot(0, "answer", "testing.where"))
    engine = Analytics(db, entries=lambda: [], clock=lambda: T0 + dt.timedelta(hours=1))
    assert engine.answers(*engine.local_day_range(DAY, DAY), Filters())["questions"] == 2


def test_unanswered_questions_show_names_masked_as_the_kb_inbox_does(db):
    """The dashboard's unanswered table (and its CSV) showed "我叫王小明" as typed; the KB inbox masks it."""
    build = Builder(db)
    build.conversation("n", T0, user(0, "我叫王小明，宠物狗要做核酸吗"), bot(0, "not_covered"))
    engine = Analytics(db, entries=lambda: [], clock=lambda: T0 + dt.timedelta(hours=1))
    shown = [row["text"] for row in engine.answers(*engine.local_day_range(DAY, DAY), Filters())["unanswered"]]
    assert shown == ["我叫***，宠物狗要做核酸吗"]
