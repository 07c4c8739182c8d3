"""The unanswered-question inbox (issue 9): failures from real conversations appear grouped and
masked; "add as paraphrase" + publish makes the next citizen's identical question answered.

Why: the questions a bot fails on are the list of what its KB lacks; without an inbox nobody sees them."""
from __future__ import annotations

from bot.kb.inbox import mask_names, paraphrase_text
from tests.test_kb_live import _login

DOG = "宠物狗需要做核酸吗"
TARGET = "quarantine.pets_during_isolation"


def _ask(client, user, text):
    response = client.post("/api/v1/messages", json={"user_id": user, "text": text, "new_conversation": True})
    assert response.status_code == 200, response.json
    return response.json


def test_mask_names_and_numbers():
    assert mask_names("我叫张三，电话13812345678") == "我叫**，电话138****5678"
    assert "Smith" not in mask_names("Hello, my name is John Smith")
    # a paraphrase keeps the question, not the masked personal clauses
    assert paraphrase_text(mask_names("我叫王小明，宠物狗需要做核酸吗？电话13912345678")) == "宠物狗需要做核酸吗？"
    assert paraphrase_text("我叫***") == "我叫***"


def test_a_question_with_the_personal_data_the_paraphrase_left_out_is_known():
    """Round 6: the editor adds "宠物狗需要做核酸吗？" from "我叫***，宠物狗需要做核酸吗？电话***"; the citizen asking again
    with name and number was looked up word for word, not found, and scored by a publish's provisional index (its
    entry classifier not retrained yet): P 0.30, "did you mean" (the browser test of the inbox failed on it)."""
    from bot.engine import without_personal_data
    from bot.retrieval import KnownQuestions
    from bot.text import normalise

    known = KnownQuestions([TARGET, "testing.pcr_fee"], [normalise(DOG + "？"), normalise("做核酸要钱吗")],
                           strip=without_personal_data)
    assert known.entry(normalise("我叫王小明，宠物狗需要做核酸吗？电话13912345678")) == TARGET
    assert known.entry(normalise(DOG)) == TARGET
    assert known.entry(normalise("我叫王小明，宠物猫需要做核酸吗？")) is None  # another question stays unknown
    assert KnownQuestions([TARGET], [normalise(DOG)]).entry(normalise("我叫王小明，宠物狗需要做核酸吗")) is None
    assert without_personal_data(normalise("做核酸要钱吗")) == normalise("做核酸要钱吗")
    # a remainder too short to be a question of its own is not looked up (round 6's review)
    generic = normalise("我的手机号13912345678收不到验证码，怎么办？")
    assert without_personal_data(generic) == generic
    assert KnownQuestions([TARGET], [normalise("怎么办？")], strip=without_personal_data).entry(generic) is None


def test_inbox_groups_failures_and_paraphrase_fixes_them(editing):
    from connectors.app import create_app

    app = create_app(editing)
    citizen, editor = app.test_client(), _login(app)
    asked = [("c1", DOG), ("c2", DOG), ("c3", "狗狗需要做核酸检测吗"), ("c4", "我叫张三，我的狗要做核酸吗，电话13812345678"),
             ("c5", "快递包裹要消毒吗")]
    for user, text in asked:
        reply = _ask(citizen, user, text)
        assert reply["entry_id"] is None, (text, reply)  # the bot cannot answer these today
    groups = editor.get("/agents/api/kb/inbox").json["groups"]
    dump = repr(groups)
    assert "张三" not in dump and "13812345678" not in dump and "我叫**" in dump  # masked
    dog = next(g for g in groups if DOG in g["questions"])
    assert dog["citizens"] >= 2 and dog["count"] >= 2
    assert groups[0] is dog or groups[0]["citizens"] <= dog["citizens"]  # most citizens first
    assert not any("快递" in q for q in dog["questions"])  # different meaning, different group
    assert dog["guess"] is not None and "entry_id" in dog["guess"]
    # one click: the group's questions become paraphrases of the entry (a draft), then publish
    added = editor.post("/agents/api/kb/inbox/paraphrase", json={"entry_id": TARGET, "questions": dog["questions"]})
    assert added.status_code == 200, added.json
    assert DOG in added.json["draft"]["questions"]["zh"]
    assert editor.post("/agents/api/kb/inbox/paraphrase",
                       json={"entry_id": "nope.none", "questions": [DOG]}).status_code == 404
    published = editor.post("/agents/api/kb/publish", json={"note": "inbox"})
    assert published.status_code == 200, published.json
    print(f"publish with new paraphrases (provisional): {published.json['swap_seconds']:.1f} s")
    if published.json["retraining"]:  # served at once over the previous models: the identical question answered
        provisional = _ask(citizen, "c6", DOG)
        assert provisional["entry_id"] == TARGET, provisional
        editing.kb_live._retraining.join(timeout=600)
    reply = _ask(citizen, "c7", DOG)
    assert reply["entry_id"] == TARGET, reply  # retrained: answered
    groups = editor.get("/agents/api/kb/inbox").json["groups"]
    assert not any(DOG in g["questions"] for g in groups)  # now a paraphrase: gone from the inbox
    parcel = next(g for g in groups if any("快递" in q for q in g["questions"]))
    assert editor.post("/agents/api/kb/inbox/dismiss", json={"questions": parcel["questions"]}).status_code == 200
    assert not any("快递" in q for g in editor.get("/agents/api/kb/inbox").json["groups"] for q in g["questions"])


def test_entry_list_sorts_by_most_asked_worst_rated_and_expiring(editing):
    """The editor's list answers "what do citizens ask most", "what do they dislike", "what expires"."""
    from connectors.app import create_app

    app = create_app(editing)
    citizen, editor = app.test_client(), _login(app)
    for i in range(3):
        reply = _ask(citizen, f"s{i}", "核酸检测多少钱")
    assert reply["entry_id"] == "testing.pcr_fee"
    from bot.messages import Message

    rated = editing.bot.handle(Message(user_id="s9", text="健康码怎么申领", channel="api"))
    editing.desk.feedback(rated.conversation_id, rated.turn_ids[0], "down", "outdated")
    asked = editor.get("/agents/api/kb/entries?sort=asked").json["entries"]
    assert asked[0]["id"] == "testing.pcr_fee" and asked[0]["asked"] == 3
    worst = editor.get("/agents/api/kb/entries?sort=worst").json["entries"]
    assert rated.entry_id and worst[0]["id"] == rated.entry_id and worst[0]["down"] == 1
    expiring = editor.get("/agents/api/kb/entries?sort=expiring").json["entries"]
    assert expiring and all(e["valid_until"] for e in expiring)
    assert [e["days_left"] for e in expiring] == sorted(e["days_left"] for e in expiring)
    assert editor.get("/agents/api/kb/entries?sort=nope").status_code == 400


def test_agent_inserted_answer_is_evidence(editing):
    """A question that ended in a handoff where the agent inserted a KB answer: the inbox's best
    guess is that entry (the agent showed where the question belongs)."""
    from bot.messages import Message
    from connectors.app import create_app

    reply = None
    # Two failures in a row hand over (a did-you-mean in between resets the count): the same
    # uncovered question twice is the dependable way there.
    for text in ("我家狗要做核酸检测吗", "我家狗要做核酸检测吗", "狗狗出门要不要做核酸", "宠物狗需要核酸证明吗"):
        reply = editing.bot.handle(Message(user_id="h1", text=text, channel="api"))
        if reply.handoff_opened:
            break
    assert reply.handoff_opened and reply.handoff is not None, reply
    agent = editing.staff.get("alice")
    editing.desk.claim(reply.handoff.id, agent)
    answer = editing.bot.kb.entries[TARGET].answer.zh
    editing.desk.reply(reply.handoff.id, agent, answer + "\n来源：中国疾病预防控制中心")
    groups = _login(create_app(editing)).get("/agents/api/kb/inbox").json["groups"]
    handed = [g for g in groups if "handoff" in g["reasons"]]
    assert handed and handed[0]["guess"]["entry_id"] == TARGET and handed[0]["guess"]["evidence"] == "picked"


def test_did_you_mean_then_picked_option_is_evidence(editing):
    """A did-you-mean reply and the option the citizen then tapped: the inbox shows the question with
    that entry as its best guess (implicit evidence), whatever retrieval ranked first."""
    from connectors.app import create_app

    app = create_app(editing)
    citizen = app.test_client()
    reply = _ask(citizen, "p1", "我家猫咪要不要测核酸")
    buttons = [b for r in reply["replies"] for b in r.get("buttons", []) if b["payload"].startswith("/faq")]
    assert buttons, reply  # a did-you-mean with entry buttons
    chosen = buttons[-1]["payload"]
    picked = chosen.split('"entry": "')[1].split('"')[0]
    follow = citizen.post("/api/v1/messages", json={"user_id": "p1", "text": chosen,
                                                     "conversation_id": reply["conversation_id"]})
    assert follow.status_code == 200 and follow.json["entry_id"] == picked
    groups = _login(app).get("/agents/api/kb/inbox").json["groups"]
    group = next(g for g in groups if "我家猫咪要不要测核酸" in g["questions"])
    assert group["reasons"] == {"did_you_mean": 1} and group["picked"] == {picked: 1}
    assert group["guess"]["entry_id"] == picked and group["guess"]["evidence"] == "picked"
