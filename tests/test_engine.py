"""The whole engine on the real KB, real encoder, real index and a real SQLite file."""
import datetime as dt
import json
import time

import pytest
from sqlalchemy import func, select, text

from bot.conversations.service import ConversationError
from bot.db import StoreUnavailable
from bot.messages import InvalidMessage, Message
from bot.models import Turn
from tests.conftest import build_services


def ask(bot, text, user="u1", conversation_id=None, channel="api", **extra):
    return bot.handle(Message(user_id=user, text=text, conversation_id=conversation_id, channel=channel, **extra))


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


def test_emergency_goes_first_with_priority_handoff(services):
    bot = services.bot
    reply = ask(bot, "我爸爸呼吸困难，嘴唇发紫，核酸还没做")
    assert reply.intent == "emergency"
    assert "120" in reply.replies[0].text and reply.replies[0].kind == "emergency"
    assert [b.payload for b in reply.replies[0].buttons] == ["tel:120"]
    assert reply.handoff is not None and reply.handoff.reason == "emergency" and reply.handoff.priority == 0
    ticket = services.desk.handoff(reply.handoff.id)
    assert ticket["transcript"][0]["text"].startswith("我爸爸呼吸困难")
    assert ticket["question"].startswith("我爸爸呼吸困难")


def test_a_red_flag_while_queued_alerts_again(services):
    """Regression: a second red flag while waiting got "please wait" and no new alert."""
    bot = services.bot
    waiting = ask(bot, "我要人工客服")
    assert waiting.handoff.priority == 1
    seen = services.notifier.version("")
    again = ask(bot, "我突然胸痛得厉害，喘不上气", conversation_id=waiting.conversation_id)
    assert again.replies[0].kind == "emergency" and "120" in again.replies[0].text
    assert again.handoff.id == waiting.handoff.id and again.handoff.priority == 0
    assert services.notifier.version("")[1] > seen[1], "the agents' queue must be woken (alarm)"
    third = ask(bot, "还是喘不上气", conversation_id=waiting.conversation_id)
    assert third.replies[0].kind == "emergency", "every red flag re-alerts, even when already urgent"


def test_ask_human_creates_ticket_with_whole_context(services):
    bot = services.bot
    first = ask(bot, "核酸结果多久能出来")
    reply = ask(bot, "转人工", conversation_id=first.conversation_id)
    assert reply.handoff and reply.handoff.reason == "user_request" and reply.handoff.queue_position == 1
    assert reply.status == "waiting"
    ticket = services.desk.handoff(reply.handoff.id)
    assert ticket["channel"] == "api" and ticket["language"] == "zh" and ticket["user"].startswith("p_")
    assert ticket["kb_version"] == bot.kb.version
    assert ticket["question"] == "核酸结果多久能出来", "the agent sees the question, not 转人工"
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


def test_options_in_between_do_not_forgive_a_failure(fresh_bot):
    first = ask(fresh_bot, "xq zzv blorf")
    assert first.handoff is None and first.action == "not_covered"
    menu = ask(fresh_bot, '/topic{"category": "testing"}', conversation_id=first.conversation_id)
    assert menu.action == "topic" and menu.handoff is None
    second = ask(fresh_bot, "qwv plok zz", conversation_id=first.conversation_id)
    assert second.handoff is not None and second.handoff.reason == "low_confidence"


def test_a_topics_questions_are_headed_by_the_topic_not_a_guess(fresh_bot):
    """The citizen chose (or typed) a topic: its questions came under "您想问的是以下哪个问题？ · Did you mean one
    of these?", as if the bot had guessed."""
    zh = ask(fresh_bot, '/topic{"category": "testing"}')
    assert zh.action == "topic" and zh.replies[0].text.startswith("核酸与抗原检测的常见问题")
    assert "您想问的是" not in zh.replies[0].text and len(zh.replies[0].buttons) >= 2
    typed = ask(fresh_bot, "疫苗")
    assert typed.action == "topic" and typed.replies[0].text.startswith("疫苗接种的常见问题")


def test_an_answer_forgives_a_failure(fresh_bot):
    first = ask(fresh_bot, "xq zzv blorf")
    answered = ask(fresh_bot, '/faq{"entry": "testing.pcr_fee"}', conversation_id=first.conversation_id)
    assert answered.action == "answer"
    second = ask(fresh_bot, "qwv plok zz", conversation_id=first.conversation_id)
    assert second.handoff is None and second.action == "not_covered"


def test_messages_during_handoff_are_recorded_not_answered_by_bot(services):
    bot = services.bot
    reply = ask(bot, "我要人工客服")
    waiting = ask(bot, "核酸多少钱", conversation_id=reply.conversation_id)
    assert waiting.entry_id is None and waiting.handoff.id == reply.handoff.id
    assert "队列" in waiting.replies[0].text
    assert services.desk.list_handoffs(status="waiting")[0]["id"] == reply.handoff.id


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


def test_expired_entry_says_policy_changed(services, clock):
    entry = services.bot.kb.entries["testing.pcr_fee"]
    clock.now = dt.datetime.combine(entry.valid_until + dt.timedelta(days=1), dt.time(8))
    reply = ask(services.bot, "做核酸要花钱吗", user="u9")
    assert reply.entry_id == "testing.pcr_fee"
    assert reply.replies[0].text != entry.answer.zh and "调整" in reply.replies[0].text
    assert reply.replies[0].buttons[0].payload == "/ask_human"


def _turns(services) -> int:
    with services.db.read() as session:
        return session.execute(select(func.count(Turn.id))).scalar()


@pytest.mark.parametrize("text", ["", "   ", "x" * 2001, "a\x00b", "lone \ud800 surrogate"])
def test_invalid_text_is_rejected_before_anything_is_written(services, text):
    with pytest.raises(InvalidMessage) as error:
        ask(services.bot, text)
    assert error.value.field == "text"
    assert services.desk.list_handoffs() == [] and _turns(services) == 0


def test_failure_mid_message_leaves_nothing_half_written(services, monkeypatch):
    from bot.conversations.service import MessageScope

    original = MessageScope.add_turn

    def fail_on_bot_turn(self, role, text, **fields):
        if role == "bot":
            raise RuntimeError("disk full")
        return original(self, role, text, **fields)

    monkeypatch.setattr(MessageScope, "add_turn", fail_on_bot_turn)
    with pytest.raises(RuntimeError):
        ask(services.bot, "核酸多少钱", user="half")
    monkeypatch.undo()
    assert _turns(services) == 0
    with services.db.read() as session:
        assert session.execute(text("select count(*) from conversations")).scalar() == 0


def test_database_down_raises_store_unavailable(settings, engine, clock):
    """A server may start while its database is down: it comes up, and messages get StoreUnavailable (503)."""
    from tests.conftest import build_services

    down = build_services(settings, engine, "postgresql+psycopg://nobody@127.0.0.1:1/none", clock)
    try:
        assert down.schema_ready is False and down.db.ping() is False
        with pytest.raises(StoreUnavailable):
            ask(down.bot, "核酸多少钱")
    finally:
        down.close()


def test_a_conversation_cannot_be_joined_by_another_user(services):
    mine = ask(services.bot, "核酸多少钱", user="owner")
    with pytest.raises(ConversationError) as error:
        ask(services.bot, "转人工", user="intruder", conversation_id=mine.conversation_id)
    assert error.value.kind == "forbidden" and error.value.field == "conversation_id"
    assert [t["role"] for t in services.desk.transcript(mine.conversation_id)["turns"]] == ["user", "bot"]


def test_conversations_belong_to_their_channel(services):
    """The same external id on two channels is two citizens (a Rasa sender is not a web user)."""
    rasa = ask(services.bot, "核酸多少钱", user="same-id", channel="rasa")
    api = ask(services.bot, "核酸多少钱", user="same-id", channel="api")
    assert rasa.conversation_id != api.conversation_id
    with pytest.raises(ConversationError):
        ask(services.bot, "hi", user="same-id", channel="api", conversation_id=rasa.conversation_id)


def test_identity_continues_the_citizens_conversation_and_new_starts_afresh(services):
    first = ask(services.bot, "核酸多少钱", user="family-phone")
    second = ask(services.bot, "健康码变黄怎么办", user="family-phone")
    assert second.conversation_id == first.conversation_id
    fresh = ask(services.bot, "你好", user="family-phone", new_conversation=True)
    assert fresh.conversation_id != first.conversation_id
    assert ask(services.bot, "谢谢", user="family-phone").conversation_id == fresh.conversation_id


def test_a_retried_message_is_answered_once(services):
    """Idempotency: the same client_message_id stores one user turn and gets the same reply."""
    first = ask(services.bot, "核酸多少钱", user="retry", client_message_id="m-1")
    again = ask(services.bot, "核酸多少钱", user="retry", client_message_id="m-1")
    assert again.replayed and again.conversation_id == first.conversation_id
    assert [r.text for r in again.replies] == [r.text for r in first.replies]
    assert again.turn_ids == first.turn_ids
    assert _turns(services) == 2


def test_an_unknown_conversation_id_starts_a_new_one(services):
    reply = ask(services.bot, "核酸多少钱", user="after-reset", conversation_id="0" * 32)
    assert reply.conversation_id != "0" * 32 and len(reply.conversation_id) == 32


def test_abandon_on_new_conversation_and_by_silence(services, clock):
    waiting = ask(services.bot, "转人工", user="leaver")
    assert waiting.status == "waiting"
    ask(services.bot, "你好", user="leaver", new_conversation=True)
    closed = services.desk.handoff(waiting.handoff.id)
    assert closed["status"] == "abandoned" and closed["conversation_status"] == "abandoned"
    other = ask(services.bot, "转人工", user="silent")
    clock.advance(minutes=31)
    assert services.conversations.abandon_stale(dt.timedelta(minutes=30)) == 1
    assert services.desk.handoff(other.handoff.id)["status"] == "abandoned"
    resumed = ask(services.bot, "核酸多少钱", user="silent")
    assert resumed.status == "bot" and resumed.entry_id


def test_one_open_ticket_per_citizen(services):
    """400 anonymous tickets once put a real citizen at queue position 456: one open ticket each. A citizen who
    asks from a second conversation while the first still waits is told so, not queued twice."""
    first = ask(services.bot, "转人工", user="greedy")
    fresh = ask(services.bot, "你好", user="greedy", new_conversation=True)  # leaves the first: abandoned
    again = ask(services.bot, "转人工", user="greedy", conversation_id=first.conversation_id)
    assert again.handoff is not None and again.handoff.id != first.handoff.id  # back in the first: queued anew
    other = ask(services.bot, "转人工", user="greedy", conversation_id=fresh.conversation_id)
    assert other.handoff is None and other.status == "bot"
    assert "另一个对话" in other.replies[-1].text
    assert [h["id"] for h in services.desk.list_handoffs(status="waiting")] == [again.handoff.id]


def test_a_new_conversation_ends_the_agents_ticket_on_the_one_left(services):
    """The widget's 新对话 (a shared family phone's next person) while an agent had the ticket: it stayed claimed,
    the agent kept writing into a conversation no screen showed any more, and the new conversation's 转人工 was
    told to go back to "the other conversation", which the widget had just cleared."""
    first = ask(services.bot, "转人工", user="family-phone")
    agent = services.staff.create("agent1", "password123")
    services.desk.claim(first.handoff.id, agent)
    other = ask(services.bot, "转人工", user="family-phone", new_conversation=True)
    assert other.handoff is not None and other.status == "waiting" and other.handoff.id != first.handoff.id
    left = services.desk.handoff(first.handoff.id, agent)
    assert left["status"] == "abandoned" and left["conversation_status"] == "abandoned"
    assert services.desk.list_handoffs(status="claimed") == []
    assert [h["id"] for h in services.desk.list_handoffs(status="waiting")] == [other.handoff.id]
    with pytest.raises(ConversationError):  # the agent's reply to the one left is refused, not lost unread
        services.desk.reply(first.handoff.id, agent, "还在吗？")
    # whoever takes the new ticket sees the conversation left behind
    ticket = services.desk.handoff(other.handoff.id, agent)
    assert first.conversation_id in [c["conversation_id"] for c in ticket["previous_conversations"]]


def test_a_quiet_citizen_with_an_agent_is_not_swept_as_gone(services, clock):
    """A claimed ticket may now close as abandoned (a new conversation), but silence with an agent is not leaving:
    the sweep of silent waiting citizens leaves it alone."""
    first = ask(services.bot, "转人工", user="quiet")
    services.desk.claim(first.handoff.id, services.staff.create("agent1", "password123"))
    clock.advance(minutes=45)
    assert services.conversations.abandon_stale(dt.timedelta(minutes=30)) == 0
    assert services.desk.handoff(first.handoff.id)["status"] == "claimed"


def test_a_server_closes_tickets_of_citizens_who_left_the_queue(settings, engine, clock, tmp_path):
    """Regression: abandon_stale existed but nothing ran it, so a citizen who left stayed 'waiting'
    forever (the queue kept the ticket, the dashboard never counted the abandonment)."""
    desk = settings.desk.model_copy(update={"abandon_sweep_seconds": 0.05})
    services = build_services(settings, engine, f"sqlite:///{tmp_path / 'sweep.db'}", clock, desk=desk)
    try:
        left = ask(services.bot, "转人工", user="gone")
        stays = ask(services.bot, "转人工", user="here")
        clock.advance(minutes=20)
        ask(services.bot, "还要等多久", user="here", conversation_id=stays.conversation_id)
        clock.advance(minutes=11)  # "gone" silent 31 min, "here" 11 min
        services.start()
        deadline = time.monotonic() + 10
        while services.desk.handoff(left.handoff.id)["status"] != "abandoned":
            assert time.monotonic() < deadline, "nothing swept the stale wait"
            time.sleep(0.05)
        assert services.desk.handoff(stays.handoff.id)["status"] == "waiting"
    finally:
        services.close()
