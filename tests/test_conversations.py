"""The conversation domain on SQLite and PostgreSQL over real connections: the status
machine, the only writer of it, sequences, queue order, races, the outbox."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from bot.conversations.events import HandoffOpened, TurnAdded
from bot.conversations.outbox import Delivery, Outcome
from bot.conversations.service import ConversationError
from bot.conversations.status import ConversationStatus, InvalidTransition, transition
from bot.messages import Message
from bot.models import OutboxEvent
from tests.conftest import build_services

PASSWORD = "correct horse 1"


def say(services, user, text, **extra):
    return services.bot.handle(Message(user_id=user, text=text, channel="api", **extra))


@pytest.mark.parametrize("status, action, after", [
    ("bot", "handoff", "waiting"), ("waiting", "claim", "claimed"), ("claimed", "resolve", "resolved"),
    ("claimed", "hand_back", "returned"), ("claimed", "release", "waiting"), ("claimed", "transfer", "claimed"),
    ("waiting", "abandon", "abandoned"), ("claimed", "abandon", "abandoned"), ("resolved", "resume", "bot"),
    ("returned", "resume", "bot"),
])
def test_transitions(status, action, after):
    assert transition(status, action) == ConversationStatus(after)


@pytest.mark.parametrize("status, action", [
    ("bot", "claim"), ("waiting", "resolve"), ("waiting", "hand_back"), ("claimed", "claim"),
    ("resolved", "claim"), ("bot", "resume"), ("resolved", "abandon"), ("nonsense", "claim"),
])
def test_illegal_transitions_are_refused(status, action):
    with pytest.raises(InvalidTransition):
        transition(status, action)


def test_conversation_and_handoff_round_trip(any_services):
    first = say(any_services, "pg-user", "How many days must a close contact quarantine?")
    assert first.entry_id == "quarantine.isolation_duration"
    second = say(any_services, "pg-user", "talk to a person please", conversation_id=first.conversation_id)
    assert second.handoff is not None and second.status == "waiting"
    conversation = any_services.desk.transcript(first.conversation_id)
    assert conversation["status"] == "waiting" and conversation["language"] == "en"
    assert [t["seq"] for t in conversation["turns"]] == [1, 2, 3, 4]
    assert [h["id"] for h in any_services.desk.list_handoffs(status="waiting")] == [second.handoff.id]
    ticket = any_services.desk.handoff(second.handoff.id)
    assert ticket["candidates"][0]["entry_id"] == first.entry_id
    assert ticket["transcript"][1]["entry_id"] == first.entry_id


def test_queue_order_is_urgent_first_then_oldest(any_services, clock):
    normal = say(any_services, "a", "转人工")
    clock.advance(seconds=5)
    urgent = say(any_services, "b", "孩子高烧40度还抽搐了")
    assert urgent.handoff.priority == 0 and urgent.handoff.queue_position == 1
    assert any_services.desk.handoff(normal.handoff.id)["queue_position"] == 2
    assert [h["id"] for h in any_services.desk.list_handoffs(status="waiting")] == [urgent.handoff.id,
                                                                                     normal.handoff.id]


def test_concurrent_messages_in_one_conversation_keep_a_clean_sequence(any_services):
    first = say(any_services, "c", "你好")
    errors = []

    def send(i):
        try:
            say(any_services, "c", f"疫苗第{i}针间隔多久", conversation_id=first.conversation_id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = [t["seq"] for t in any_services.desk.transcript(first.conversation_id)["turns"]]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2 + 6 * 2


def test_concurrent_first_messages_of_one_citizen_share_one_conversation(any_services):
    """Regression (PostgreSQL): concurrent first messages of a new conversation → 58/130 HTTP 500."""
    results, errors = [], []
    barrier = threading.Barrier(8)

    def send(i):
        barrier.wait()
        try:
            results.append(say(any_services, "rasa-like-sender", f"疫苗第{i}针间隔多久").conversation_id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1


def test_exactly_one_agent_wins_a_claim(any_services):
    ticket = say(any_services, "race", "/ask_human").handoff.id
    agents = [any_services.staff.create(f"agent{i}", PASSWORD) for i in range(8)]
    results: list[str] = []
    barrier = threading.Barrier(len(agents))

    def attempt(agent):
        barrier.wait()
        try:
            any_services.desk.claim(ticket, agent)
            results.append("won")
        except ConversationError as exc:
            results.append(exc.kind)

    threads = [threading.Thread(target=attempt, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    detail = any_services.desk.handoff(ticket)
    assert detail["status"] == "claimed" and detail["conversation_status"] == "claimed"
    assert len([t for t in detail["transcript"] if t.get("intent") == "handoff_claimed"]) == 1


def test_desk_actions_follow_the_status_machine(any_services):
    alice = any_services.staff.create("alice", PASSWORD, "Alice")
    bob = any_services.staff.create("bob", PASSWORD, "Bob")
    desk = any_services.desk
    reply = say(any_services, "citizen", "转人工")
    ticket = reply.handoff.id
    with pytest.raises(ConversationError) as error:
        desk.reply(ticket, alice, "hi")
    assert error.value.kind == "conflict"  # not claimed yet
    with pytest.raises(ConversationError):
        desk.resolve(ticket, alice)  # resolve is never before claim
    desk.claim(ticket, alice)
    with pytest.raises(ConversationError) as error:
        desk.reply(ticket, bob, "me too")
    assert error.value.kind == "forbidden"
    desk.note(ticket, bob, "身份证号 110101199003077578 已核实")  # a colleague may leave a private note
    desk.transfer(ticket, alice, "bob")
    assert desk.handoff(ticket)["claimed_by"] == "bob"
    desk.transfer(ticket, bob, None)  # back to the queue
    detail = desk.handoff(ticket)
    assert detail["status"] == "waiting" and detail["queue_position"] == 1
    desk.claim(ticket, alice)
    desk.reply(ticket, alice, "您好，我是人工客服")
    desk.resolve(ticket, alice)
    with pytest.raises(ConversationError):
        desk.resolve(ticket, alice)
    detail = desk.handoff(ticket)
    assert detail["status"] == "resolved" and detail["conversation_status"] == "resolved"
    note = next(t for t in detail["transcript"] if t["role"] == "note")
    assert "110*************78" in note["text"] and "110101199003077578" not in note["text"]
    citizen = desk.turns_after(reply.conversation_id, 0, "api", "citizen")
    assert "note" not in [t["role"] for t in citizen["turns"]], "private notes are staff only"
    assert citizen["rating_due"] == {"handoff_id": ticket, "agent": "Alice"}
    after = say(any_services, "citizen", "核酸检测多少钱", conversation_id=reply.conversation_id)
    assert after.intent == "faq" and after.status == "bot"


def test_every_change_is_an_event_in_the_same_transaction(any_services):
    reply = say(any_services, "evented", "转人工")
    with any_services.db.read() as session:
        types = session.execute(select(OutboxEvent.type).where(
            OutboxEvent.conversation_id == reply.conversation_id).order_by(OutboxEvent.id)).scalars().all()
    assert types == ["handoff.opened", "turn.added", "turn.added"]


class Recorder:
    """A consumer that wants every opened handoff delivered, and fails as scripted."""

    name = "recorder"

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.delivered = []

    def deliveries(self, event):
        return [Delivery(key=f"rec:{event.handoff['id']}", payload=event.handoff)] \
            if isinstance(event, HandoffOpened) else []

    def deliver(self, payload):
        outcome = self.outcomes.pop(0) if self.outcomes else Outcome.done()
        if outcome.status == "done":
            self.delivered.append(payload["id"])
        return outcome


def test_outbox_retries_with_backoff_and_delivers_once(any_services, clock):
    consumer = Recorder([Outcome.retry("HTTP 500"), Outcome.retry("timeout")])
    worker = any_services.add_consumer(consumer)
    ticket = say(any_services, "hooked", "转人工").handoff.id
    assert worker.run_once() == 0  # attempt 1 failed
    assert worker.run_once() == 0  # not due yet: backoff 2 s
    clock.advance(seconds=2)
    assert worker.run_once() == 0  # attempt 2 failed: next in 4 s
    clock.advance(seconds=3)
    assert worker.run_once() == 0
    clock.advance(seconds=1)
    assert worker.run_once() == 1 and consumer.delivered == [ticket]
    clock.advance(seconds=600)
    assert worker.run_once() == 0 and consumer.delivered == [ticket]


def test_a_delivery_leased_by_a_dead_process_is_sent_again(any_services, clock):
    consumer = Recorder([])
    worker = any_services.add_consumer(consumer)
    say(any_services, "crash", "转人工")
    leased = worker._lease(clock())  # a process takes the row ... and dies before recording anything
    assert len(leased) == 1 and worker.run_once() == 0
    clock.advance(seconds=any_services.settings.outbox.lease_seconds + 1)
    assert worker.run_once() == 1


def test_held_deliveries_wait_and_keep_their_order(any_services, clock):
    sent = []

    class Held:
        name = "held"

        def deliveries(self, event):
            if isinstance(event, TurnAdded) and event.role == "user":
                return [Delivery(key=f"h:{event.turn_id}", payload={"text": event.text}, ordering_key="one-user")]
            return []

        def deliver(self, payload):
            if payload["text"] == "first" and not sent:
                return Outcome.hold("window closed")
            sent.append(payload["text"])
            return Outcome.done()

    worker = any_services.add_consumer(Held())
    say(any_services, "ordered", "first")
    say(any_services, "ordered", "second")
    assert worker.run_once() == 0 and sent == []  # first is held, second must not overtake it
    with any_services.db.transaction() as session:
        any_services.outbox.release_held(session, "held", "one-user", clock())
    sent.append("(window open)")
    assert worker.run_once() == 1  # first goes; second waits for the next pass
    assert worker.run_once() == 1
    assert sent == ["(window open)", "first", "second"]


def test_a_sweep_does_not_abandon_a_citizen_who_wrote_after_it_listed_them(settings, engine, clock, postgres_url,
                                                                           monkeypatch):
    """The sweep lists silent waiting citizens, then locks each one: a citizen who wrote in between ("我还在")
    was abandoned all the same (their ticket left the queue seconds after they wrote). Re-checked under the lock.
    PostgreSQL: the citizen's message commits in its own transaction while the sweep's is open."""
    from bot.conversations.service import ConversationService

    svc = build_services(settings, engine, postgres_url, clock)
    try:
        first = say(svc, "sweep-user", "转人工")
        assert first.status == "waiting"
        clock.advance(minutes=30)
        original = ConversationService._abandon_if_waiting
        wrote: dict = {}

        def citizen_writes_between_the_list_and_the_lock(self, session, conversation_id, now, *rest):
            if not wrote:
                writer = threading.Thread(target=lambda: wrote.setdefault(
                    "reply", say(svc, "sweep-user", "我还在，请尽快", conversation_id=first.conversation_id)))
                writer.start()
                writer.join(10)
                assert wrote["reply"].status == "waiting"
            return original(self, session, conversation_id, now, *rest)

        monkeypatch.setattr(ConversationService, "_abandon_if_waiting", citizen_writes_between_the_list_and_the_lock)
        assert svc.conversations.abandon_stale(dt.timedelta(minutes=10)) == 0
        assert svc.desk.transcript(first.conversation_id)["status"] == "waiting"
        assert [h["id"] for h in svc.desk.list_handoffs(status="waiting")] == [first.handoff.id]
    finally:
        svc.close()


def test_a_red_flag_sent_while_an_agent_claims_is_not_lost_to_a_deadlock(settings, engine, clock, postgres_url,
                                                                        monkeypatch):
    """A citizen's message locks the conversation, then raises the ticket's priority; a claim locked the ticket
    first, then the conversation. Both at once deadlocked on PostgreSQL: the red flag was refused with a 503 (and
    the circuit breaker tripped for everyone). Forced here: the agent takes its first lock while the citizen holds
    the conversation and is about to update the ticket."""
    import time

    from bot.conversations.service import ConversationService, MessageScope

    svc = build_services(settings, engine, postgres_url, clock)
    try:
        first = say(svc, "deadlock-user", "转人工")
        assert first.status == "waiting"
        alice = svc.staff.create("alice", "correct horse 1")
        agent_locked = threading.Event()
        threads: dict = {}
        original_lock, original_escalate = ConversationService._lock, MessageScope.escalate

        def lock(session, conversation_id):
            if threading.current_thread() is threads.get("agent"):
                agent_locked.set()
                time.sleep(0.5)  # the citizen's update of the ticket runs now
            return original_lock(session, conversation_id)

        def escalate(self):
            agent_locked.wait(10)  # the citizen holds the conversation; the agent has begun its ticket
            return original_escalate(self)

        monkeypatch.setattr(ConversationService, "_lock", staticmethod(lock))
        monkeypatch.setattr(MessageScope, "escalate", escalate)
        results: dict = {}

        def run(name, action):
            try:
                results[name] = action()
            except Exception as exc:  # what the test reports
                results[name] = exc

        citizen = threading.Thread(target=run, args=("citizen", lambda: say(
            svc, "deadlock-user", "孩子高烧40度还抽搐了", conversation_id=first.conversation_id)))
        agent = threading.Thread(target=run, args=("agent", lambda: svc.desk.claim(first.handoff.id, alice)))
        threads["agent"] = agent
        citizen.start()
        time.sleep(0.3)
        agent.start()
        citizen.join(20)
        agent.join(20)
        assert not isinstance(results["citizen"], Exception), results
        assert not isinstance(results["agent"], Exception), results
        assert results["citizen"].handoff.priority == 0  # urgent
        texts = [t["text"] for t in svc.desk.transcript(first.conversation_id)["turns"]]
        assert "孩子高烧40度还抽搐了" in texts
    finally:
        svc.close()
