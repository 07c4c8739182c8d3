"""Conversations and tickets on SQLite and PostgreSQL (DATABASE_URL), over real connections."""
import threading

from bot.engine import Bot
from bot.messages import Message


def make_bot(bot, store):
    return Bot(bot.settings, bot.kb, bot.tokenizer, bot.encoder, bot.index, store)


def test_conversation_and_handoff_round_trip(bot, any_store):
    b = make_bot(bot, any_store)
    first = b.handle(Message(user_id="pg-user", text="How many days must a close contact quarantine?"))
    assert first.entry_id == "quarantine.isolation_duration"
    second = b.handle(Message(user_id="pg-user", text="talk to a person please", conversation_id=first.conversation_id))
    assert second.handoff is not None
    conversation = any_store.conversation(first.conversation_id)
    assert conversation["status"] == "handoff" and conversation["language"] == "en"
    assert [t["seq"] for t in conversation["turns"]] == [1, 2, 3, 4]
    listed = any_store.list_handoffs(status="open")
    assert [h["id"] for h in listed] == [second.handoff.id]
    ticket = any_store.handoff(second.handoff.id)
    assert ticket["candidates"][0]["entry_id"] == first.entry_id
    assert ticket["transcript"][1]["entry_id"] == first.entry_id


def test_queue_order_is_urgent_first_then_oldest(bot, any_store):
    b = make_bot(bot, any_store)
    normal = b.handle(Message(user_id="a", text="转人工"))
    urgent = b.handle(Message(user_id="b", text="孩子高烧40度还抽搐了"))
    assert urgent.handoff.priority == 0 and urgent.handoff.queue_position == 1
    assert any_store.handoff(normal.handoff.id)["queue_position"] == 2
    assert [h["id"] for h in any_store.list_handoffs(status="open")] == [urgent.handoff.id, normal.handoff.id]


def test_concurrent_messages_in_one_conversation_keep_a_clean_sequence(bot, any_store):
    b = make_bot(bot, any_store)
    first = b.handle(Message(user_id="c", text="你好"))
    errors = []

    def send(i):
        try:
            b.handle(Message(user_id="c", text=f"疫苗第{i}针间隔多久", conversation_id=first.conversation_id))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = [t["seq"] for t in any_store.conversation(first.conversation_id)["turns"]]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2 + 6 * 2
