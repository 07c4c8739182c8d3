"""The whole engine on the real KB, real encoder, real index and a real SQLite file."""
import datetime as dt
import json

import pytest

from bot.messages import InvalidMessage, Message
from bot.store import StoreUnavailable


def ask(bot, text, user="u1", conversation_id=None):
    return bot.handle(Message(user_id=user, text=text, conversation_id=conversation_id))


def test_chinese_question_gets_answer_with_source(fresh_bot):
    reply = ask(fresh_bot, "做核酸要花钱吗")
    assert reply.intent == "faq" and reply.entry_id == "testing.pcr_fee"
    assert reply.language == "zh"
    answer = reply.replies[0]
    assert answer.source["url"].startswith("https://") and answer.updated
    assert answer.text == fresh_bot.kb.entries["testing.pcr_fee"].answer.zh


def test_english_and_traditional_questions(fresh_bot):
    english = ask(fresh_bot, "How much does a PCR test cost?")
    assert english.entry_id == "testing.pcr_fee" and english.language == "en"
    assert english.replies[0].text == fresh_bot.kb.entries["testing.pcr_fee"].answer.en
    traditional = ask(fresh_bot, "健康碼變黃了怎麼辦", user="u2")
    assert traditional.entry_id and traditional.entry_id.startswith("health_code.")
    assert traditional.language == "zh"


def test_emergency_goes_first_with_priority_handoff(fresh_bot):
    reply = ask(fresh_bot, "我爸爸呼吸困难，嘴唇发紫，核酸还没做")
    assert reply.intent == "emergency"
    assert "120" in reply.replies[0].text
    assert reply.handoff is not None and reply.handoff.reason == "emergency" and reply.handoff.priority == 0
    ticket = fresh_bot.store.handoff(reply.handoff.id)
    assert ticket["transcript"][0]["text"].startswith("我爸爸呼吸困难")


def test_ask_human_creates_ticket_with_whole_context(fresh_bot):
    first = ask(fresh_bot, "核酸结果多久能出来")
    reply = ask(fresh_bot, "转人工", conversation_id=first.conversation_id)
    assert reply.handoff and reply.handoff.reason == "user_request" and reply.handoff.queue_position == 1
    ticket = fresh_bot.store.handoff(reply.handoff.id)
    assert ticket["channel"] == "web" and ticket["user_id"] == "u1" and ticket["language"] == "zh"
    assert ticket["kb_version"] == fresh_bot.kb.version
    assert len(ticket["candidates"]) == 3 and ticket["candidates"][0]["entry_id"] == first.entry_id
    roles = [t["role"] for t in ticket["transcript"]]
    assert roles == ["user", "bot", "user", "bot"]
    bot_turn = ticket["transcript"][1]
    assert bot_turn["entry_id"] == first.entry_id and bot_turn["score"] > 0 and bot_turn["time"]


def test_two_failures_in_a_row_hand_off(fresh_bot):
    first = ask(fresh_bot, "xq zzv blorf")
    assert first.handoff is None and first.replies[0].buttons[-1].payload == "/ask_human"
    second = ask(fresh_bot, "qwv plok zz", conversation_id=first.conversation_id)
    assert second.handoff is not None and second.handoff.reason == "low_confidence"


def test_messages_during_handoff_are_recorded_not_answered_by_bot(fresh_bot):
    reply = ask(fresh_bot, "我要人工客服")
    waiting = ask(fresh_bot, "核酸多少钱", conversation_id=reply.conversation_id)
    assert waiting.entry_id is None and waiting.handoff.id == reply.handoff.id
    assert "队列" in waiting.replies[0].text
    assert fresh_bot.store.list_handoffs(status="open")[0]["id"] == reply.handoff.id


def test_buttons_drive_follow_ups_and_none_of_these(fresh_bot):
    reply = ask(fresh_bot, "做核酸要花钱吗")
    follow_up = reply.replies[0].buttons[0]
    payload = json.loads(follow_up.payload.removeprefix("/faq"))
    chosen = ask(fresh_bot, follow_up.payload, conversation_id=reply.conversation_id)
    assert chosen.entry_id == payload["entry"] and chosen.confidence == 1.0
    none = ask(fresh_bot, "/none_of_these", conversation_id=reply.conversation_id)
    assert none.handoff is None and none.replies[0].buttons
    again = ask(fresh_bot, "/none_of_these", conversation_id=reply.conversation_id)
    assert again.handoff is not None


def test_expired_entry_says_policy_changed(fresh_bot):
    entry = fresh_bot.kb.entries["testing.pcr_fee"]
    reply = fresh_bot.handle(Message(user_id="u9", text="做核酸要花钱吗"),
                             today=entry.valid_until + dt.timedelta(days=1))
    assert reply.entry_id == "testing.pcr_fee"
    assert reply.replies[0].text != entry.answer.zh and "调整" in reply.replies[0].text
    assert reply.replies[0].buttons[0].payload == "/ask_human"


@pytest.mark.parametrize("text", ["", "   ", "x" * 2001])
def test_invalid_text_is_rejected_before_anything_is_written(fresh_bot, text):
    with pytest.raises(InvalidMessage):
        ask(fresh_bot, text)
    assert fresh_bot.store.list_handoffs() == []
    with fresh_bot.store.transaction() as session:
        assert session.execute(__import__("sqlalchemy").text("select count(*) from turns")).scalar() == 0


def test_failure_mid_message_leaves_nothing_half_written(fresh_bot, monkeypatch):
    original = fresh_bot.store.add_turn

    def fail_on_bot_turn(session, conv, role, text, **fields):
        if role == "bot":
            raise RuntimeError("disk full")
        return original(session, conv, role, text, **fields)

    monkeypatch.setattr(fresh_bot.store, "add_turn", fail_on_bot_turn)
    with pytest.raises(RuntimeError):
        ask(fresh_bot, "核酸多少钱", conversation_id="half-written")
    monkeypatch.undo()
    assert fresh_bot.store.conversation("half-written") is None


def test_database_down_raises_store_unavailable(bot):
    from bot.engine import Bot
    from bot.store import Store

    down = Bot(bot.settings, bot.kb, bot.tokenizer, bot.encoder, bot.index,
               Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"))
    with pytest.raises(StoreUnavailable):
        ask(down, "核酸多少钱")


def test_a_conversation_cannot_be_joined_by_another_user(fresh_bot):
    mine = ask(fresh_bot, "核酸多少钱", user="owner")
    with pytest.raises(InvalidMessage) as error:
        ask(fresh_bot, "转人工", user="intruder", conversation_id=mine.conversation_id)
    assert error.value.field == "conversation_id"
    assert [t["role"] for t in fresh_bot.store.conversation(mine.conversation_id)["turns"]] == ["user", "bot"]
