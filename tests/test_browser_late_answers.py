"""A slow answer is never applied to what the person moved on to, and one tap sends one request: the citizen
widget and the agent desk in headless Debian Chromium against a real server (the server, pages and helpers of
tests/test_browser_ux.py). Each test holds a request (``page.route``) until the next action is on screen, then
answers it; each failed on the code before (README, "What is on screen is what the buttons act on")."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import test_browser_ux as ux
from tests.conftest import CHROMIUM, hold_first, release
from tests.test_browser_ux import CONVERSATION_JS, PASSWORD, ask, login, open_handoff

# test_browser_ux's fixtures, set up again for this module (its own server and pages): a module of its own runs on
# another test worker beside test_browser_ux, the suite's longest module
hosts, server, page_at = ux.hosts, ux.server, ux.page_at

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install -y chromium"),
]


def test_a_ticket_answering_late_is_not_drawn_over_the_one_opened_after_it(server, page_at):
    """The agent opens ticket A, whose answer is slow, then ticket B: B stays on screen when A's answer arrives
    (before, A was drawn over B, and the reply box then wrote to A's citizen). The same for the KB search
    beside the reply box: a slow search is not drawn over the next one."""
    open_handoff(server, "late-ticket-citizen-0001", "外地返回需要隔离几天 late-A")
    open_handoff(server, "late-ticket-citizen-0002", "健康码变黄了怎么办 late-B")
    page = page_at((1366, 900))
    login(page, server)
    card_a = page.locator(".ticket", has_text="late-A")
    card_b = page.locator(".ticket", has_text="late-B")
    card_a.wait_for()
    a_id, b_id = card_a.get_attribute("data-handoff-id"), card_b.get_attribute("data-handoff-id")
    held: list = []
    hold_first(page, f"**/agents/api/handoffs/{a_id}", held)
    with page.expect_request(lambda r: r.url.endswith(f"/handoffs/{a_id}")):
        card_a.click()
    card_b.click()
    page.locator(".ticket-question", has_text="late-B").wait_for()
    release(page, held)
    assert page.locator(".ticket-question").inner_text().endswith("late-B")
    assert page.locator(".ticket-head h2").inner_text().startswith(f"工单 #{b_id}")

    searches: list = []
    hold_first(page, "**/agents/api/kb/search?*", searches)
    page.fill("#kb-q", "疫苗")
    with page.expect_request(lambda r: "/kb/search?" in r.url):
        page.press("#kb-q", "Enter")
    page.fill("#kb-q", "核酸检测多少钱")
    page.press("#kb-q", "Enter")
    page.locator("#kb-results code", has_text="testing.pcr_fee").wait_for()
    drawn = page.locator("#kb-results code").all_inner_texts()
    release(page, searches)
    assert page.locator("#kb-results code").all_inner_texts() == drawn
    assert page.errors == []


def claim(page, card) -> None:
    card.click()
    page.locator("#claim").click()
    page.locator("#reply-text").wait_for()


def agent_turns(server, user: str, conversation_id: str, text: str) -> int:
    """How many agent turns holding ``text`` the server stored in the citizen's conversation."""
    with server.client() as client:
        seen = client.get(f"/web/api/conversations/{conversation_id}/turns", params={"user_id": user, "after": 0})
    return sum(1 for t in seen.json()["turns"] if t["role"] == "agent" and text in t["text"])


def test_a_reply_on_its_way_is_sent_once_and_stays_with_its_ticket(server, page_at):
    """Ctrl+Enter pressed again while the reply is on its way sends nothing more (it was sent twice: the server
    stores every reply it gets), and when the agent opens ticket B meanwhile, A's reply is not drawn into B's
    transcript when its answer arrives (it was)."""
    conversation_a = open_handoff(server, "reply-once-citizen-0001", "外地返回需要隔离几天 once-A")
    open_handoff(server, "reply-once-citizen-0002", "健康码变黄了怎么办 once-B")
    page = page_at((1366, 900))
    login(page, server)
    claim(page, page.locator(".ticket", has_text="once-A"))
    page.fill("#reply-text", "您好，请稍等 reply-once")
    held: list = []
    hold_first(page, "**/agents/api/handoffs/*/reply", held)
    with page.expect_request(lambda r: r.url.endswith("/reply")):
        page.press("#reply-text", "Control+Enter")
    page.press("#reply-text", "Control+Enter")  # again, before the answer
    page.locator(".ticket", has_text="once-B").click()
    page.locator(".ticket-question", has_text="once-B").wait_for()
    release(page, held)
    assert page.locator(".ticket-question").inner_text().endswith("once-B")
    assert "reply-once" not in page.locator("#transcript").inner_text()
    assert agent_turns(server, "reply-once-citizen-0001", conversation_a, "reply-once") == 1
    page.locator(".ticket", has_text="once-A").click()
    page.locator(".ticket-question", has_text="once-A").wait_for()
    assert page.locator("#transcript .turn.agent", has_text="reply-once").count() == 1
    assert page.errors == []


def test_a_late_resolve_leaves_the_ticket_opened_since_as_it_is(server, page_at):
    """Resolve ticket A, open B and start typing before A's answer arrives: B stays, with the text typed (before,
    B's view was replaced by "#A closed" and the typed reply was lost)."""
    open_handoff(server, "late-resolve-citizen-0001", "外地返回需要隔离几天 rs-A")
    open_handoff(server, "late-resolve-citizen-0002", "健康码变黄了怎么办 rs-B")
    page = page_at((1366, 900))
    login(page, server)
    claim(page, page.locator(".ticket", has_text="rs-A"))
    claim(page, page.locator(".ticket", has_text="rs-B"))
    page.locator(".ticket", has_text="rs-A").click()
    page.locator(".ticket-question", has_text="rs-A").wait_for()
    held: list = []
    hold_first(page, "**/agents/api/handoffs/*/resolve", held)
    page.click("#resolve")
    with page.expect_request(lambda r: r.url.endswith("/resolve")):
        page.click("#confirm-yes")
    page.locator(".ticket", has_text="rs-B").click()
    page.locator(".ticket-question", has_text="rs-B").wait_for()
    page.fill("#reply-text", "half-typed reply to B")
    release(page, held)
    assert page.locator(".ticket-question").inner_text().endswith("rs-B")
    assert page.input_value("#reply-text") == "half-typed reply to B"
    page.locator(".ticket", has_text="rs-B").click()  # the same ticket drawn again keeps the typed reply
    page.locator(".ticket-question", has_text="rs-B").wait_for()
    page.wait_for_timeout(300)
    assert page.input_value("#reply-text") == "half-typed reply to B"
    assert page.errors == []


def test_new_chat_does_not_take_back_what_was_on_its_way_for_the_previous_person(server, page_at):
    """A shared phone: one person's question is on its way (or their wait for an agent is parked on the server)
    when the next person taps 新对话. The late answer is not drawn into the new chat and does not bring the
    previous conversation back (before, its id went back into localStorage with its turns and queue banner:
    an agent's later reply to the first person reached the second)."""
    page = page_at((390, 844))
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    ask(page, "核酸检测多少钱")
    held: list = []
    hold_first(page, "**/web/api/messages", held)
    page.fill("#hl-input", "疫苗在哪里打 previous-person")
    with page.expect_request(lambda r: r.url.endswith("/web/api/messages")):
        page.keyboard.press("Enter")
    page.click(".hl-new")
    release(page, held)
    assert "previous-person" not in page.locator(".hl-log").inner_text()
    assert page.evaluate(CONVERSATION_JS) is None

    # a person waiting for an agent: the poll parked on the server answers after 新对话
    page.unroute("**/web/api/messages")
    ask(page, "核酸检测多少钱")
    polls: list = []
    hold_first(page, "**/web/api/conversations/*/turns?*", polls, when=lambda url: "wait=20" in url)
    page.click(".hl-human")
    page.wait_for_selector(".hl-status:not([hidden]) .hl-queue")
    deadline = time.monotonic() + 10
    while not polls:
        assert time.monotonic() < deadline, "no long poll"
        page.wait_for_timeout(100)
    # leaving the queue is asked first (it closes the ticket on the server); "cancel" stays in the queue
    asked: list = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click(".hl-new")
    assert asked and "离开队列" in asked[0]
    assert page.evaluate(CONVERSATION_JS) is not None and page.locator(".hl-status .hl-queue").count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(".hl-new")
    parked = polls[0]
    answer = page.request.get(parked.request.url.replace("wait=20", "wait=0"))  # what the parked poll would say
    with page.expect_response(lambda r: r.url == parked.request.url):
        parked.fulfill(response=answer)
    page.wait_for_timeout(500)
    assert page.evaluate(CONVERSATION_JS) is None
    assert page.locator(".hl-status .hl-queue").count() == 0 or page.locator(".hl-status").is_hidden()
    assert page.errors == []


def test_the_callback_form_files_one_request_however_often_it_is_tapped(server, page_at):
    """A second tap while the request is on its way files nothing more (it filed a second callback: two calls
    back; the server allows a few open ones per number)."""
    page = page_at((390, 844))
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    ask(page, "核酸检测多少钱 callback-once")
    page.click(".hl-human")
    page.locator(".hl-status .hl-link").first.click()
    page.fill("#hl-phone", "13812345678")
    held: list = []
    hold_first(page, "**/web/api/callbacks", held)
    submit = page.locator(".hl-callback button[type=submit]")
    with page.expect_request(lambda r: r.url.endswith("/web/api/callbacks")):
        submit.click()
    submit.click(force=True)  # the second tap
    release(page, held)
    page.locator(".hl-callback-done").first.wait_for()
    assert page.locator(".hl-callback-done").count() == 1
    assert page.errors == []


def test_a_canned_reply_is_saved_once_however_often_save_is_clicked(server, page_at):
    """A second click on save while the first is on its way stores nothing more (it stored the reply twice)."""
    open_handoff(server, "canned-once-citizen-0001", "疫苗第三针什么时候打 canned-once")
    admin = page_at((1366, 900))
    login(admin, server, "zhang")
    claim(admin, admin.locator(".ticket", has_text="canned-once"))
    admin.locator(".canned-admin summary").click()
    admin.fill("#canned-title", "只存一次 canned-once")
    admin.fill("#canned-zh", "请以当地通知为准。")
    admin.fill("#canned-en", "Please follow the local notice.")
    held: list = []
    hold_first(admin, "**/agents/api/canned", held)
    with admin.expect_request(lambda r: r.url.endswith("/agents/api/canned") and r.method == "POST"):
        admin.click("#canned-save")
    admin.click("#canned-save", force=True)  # the second click
    release(admin, held)
    admin.wait_for_function("() => document.querySelector('#canned-title').value === ''")  # saved: the form clears
    with server.client() as client:
        client.post("/agents/api/login", json={"username": "zhang", "password": PASSWORD}).raise_for_status()
        stored = client.get("/agents/api/canned").json()
    titles = [r["title"] for r in stored["replies"]]
    assert titles.count("只存一次 canned-once") == 1, titles
    assert admin.errors == []
