"""End to end in headless Debian Chromium: citizen widget + agent console on a real server."""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from bot.config import PROJECT_ROOT
from bot.conversations.staff import StaffDirectory
from bot.db import Database
from tests.conftest import CHROMIUM, start_server, stop_server

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
PASSWORD = "agent-password-1"
AGENT_REPLY = "您好，我是人工客服小王，核酸检测费用以当地公告为准。"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, session_dir, engine):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'browser.db'}"
    db = Database(db_url)
    db.upgrade()
    StaffDirectory(db).create("wang", PASSWORD, "小王")
    db.dispose()
    live = start_server(session_dir / "var", {"DATABASE_URL": db_url, "HOTLINE_OPEN_READ_API": "1"})
    yield live
    stop_server(live)


def ask(page, text):
    # locators pierce the widget's (open) shadow root
    answers = page.locator(".hl-bot:not(.hl-typing):not(.hl-welcome)")
    before = answers.count()
    page.fill("#hl-input", text)
    page.keyboard.press("Enter")
    answers.nth(before).wait_for()
    return answers.last


def test_citizen_and_agent_end_to_end(server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    citizen_ctx = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN", device_scale_factor=1)
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    citizen = citizen_ctx.new_page()
    errors: list[str] = []
    citizen.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        citizen.goto(server.url + "/")
        launcher = citizen.locator(".hl-launcher")
        assert launcher.get_attribute("aria-label") == "打开在线咨询"
        launcher.click()
        panel = citizen.locator("#hl-panel")
        assert panel.is_visible() and launcher.get_attribute("aria-expanded") == "true"
        assert citizen.locator(".hl-log").get_attribute("role") == "log"
        box = panel.bounding_box()
        assert box["width"] <= 375 and box["x"] >= 0  # full width on a phone, nothing off-screen
        assert citizen.evaluate("document.documentElement.scrollWidth") <= 375

        # Chinese question -> answer with source and date
        zh = ask(citizen, "核酸检测多少钱")
        assert zh.locator(".hl-source a").get_attribute("href").startswith("http")
        assert re.search(r"来源.*更新于 \d{4}-\d{2}-\d{2}", zh.locator(".hl-source").inner_text())
        zh.locator(".hl-thumb").first.click()
        citizen.wait_for_selector(".hl-thumb[aria-pressed='true']")

        # English question -> English answer with source
        en = ask(citizen, "How long does it take to get PCR results?")
        assert en.locator(".hl-source a").count() == 1
        assert re.search(r"[A-Za-z]{4,}", en.locator("p").first.inner_text())

        # a quick-reply button shows its title, not the raw payload
        follow_up = en.locator(".hl-quick .hl-chip").first
        title = follow_up.inner_text()
        follow_up.click()
        citizen.locator(".hl-user:not(.hl-pending) p", has_text=title).first.wait_for()
        assert "/faq" not in citizen.locator(".hl-log").inner_text()

        # large-font mode and the language toggle
        citizen.click(".hl-large-btn")
        assert citizen.locator(".hl-root").get_attribute("class").count("hl-large") == 1
        citizen.click(".hl-large-btn")

        # ask for a person: queue position, and leave-a-message as nobody is on duty
        citizen.click(".hl-human")
        citizen.wait_for_selector(".hl-status:not([hidden]) .hl-queue")
        assert "排队第 1 位" in citizen.locator(".hl-status").inner_text()
        citizen.locator(".hl-notice button", has_text="留言回电").first.click()
        citizen.fill("#hl-phone", "12345")
        citizen.click(".hl-callback button[type=submit]")
        assert "有效的手机号" in citizen.locator("#hl-phone-error").inner_text()
        assert citizen.get_attribute("#hl-phone", "aria-invalid") == "true"
        citizen.fill("#hl-phone", "138 1234 5678")
        citizen.fill("#hl-note", "想咨询核酸费用")
        citizen.click(".hl-callback button[type=submit]")
        citizen.wait_for_selector(".hl-callback-done")
        assert "138****5678" in citizen.locator(".hl-callback-done").inner_text()  # masked
        citizen.screenshot(path=str(ARTIFACTS / "widget-375-waiting.png"))

        # the agent logs in in another context, sees the ticket and the callback, claims, replies
        agent = agent_ctx.new_page()
        agent.on("pageerror", lambda exc: errors.append(str(exc)))
        agent.goto(server.url + "/agents/")
        agent.fill("#username", "wang")
        agent.fill("#password", "wrong-password")
        agent.click("#login-form button[type=submit]")
        agent.wait_for_selector("#login-error:has-text('wrong username or password')")
        agent.fill("#password", PASSWORD)
        agent.click("#login-form button[type=submit]")
        ticket = agent.locator(".ticket").first
        ticket.wait_for()
        assert agent.locator("#callback-count").inner_text() == "1"
        ticket.click()
        agent.wait_for_selector(".fact-reason:has-text('转人工')")  # human words; the code is in the details line
        assert "reason=user_request" in agent.locator(".fact-codes").text_content()
        assert agent.locator(".fact-language").get_attribute("data-code") == "zh"
        assert agent.locator(".fact-kb").text_content().startswith("kb=")
        assert agent.locator(".transcript .turn").count() >= 8
        agent.click("#claim")
        agent.wait_for_selector("#reply-text")
        agent.locator(".candidates .insert").first.click()
        assert "来源" in agent.input_value("#reply-text")  # one-click KB answer, with its source
        agent.fill("#reply-text", AGENT_REPLY)
        agent.click("#send-reply")
        agent.wait_for_selector(f".transcript .turn.agent:has-text('{AGENT_REPLY[:6]}')")
        agent.screenshot(path=str(ARTIFACTS / "console.png"))

        # the citizen sees the agent (long polling), with the agent's name in the status bar
        citizen.wait_for_selector(f".hl-agent:has-text('{AGENT_REPLY[:6]}')", timeout=30_000)
        assert "小王" in citizen.locator(".hl-status").inner_text()

        # a reload keeps the conversation (re-rendered from the server) and the panel open
        citizen.reload()
        citizen.wait_for_selector(f".hl-agent:has-text('{AGENT_REPLY[:6]}')")
        assert citizen.locator("#hl-panel").is_visible()
        assert citizen.locator(".hl-source").count() >= 3
        assert citizen.locator(".hl-thumb[aria-pressed='true']").count() == 1
        citizen.screenshot(path=str(ARTIFACTS / "widget-375.png"))

        # a message sent after the reload still reaches the agent; the agent resolves; the bot is back
        citizen.fill("#hl-input", "谢谢，明白了")
        citizen.keyboard.press("Enter")
        agent.wait_for_selector(".transcript .turn.user:has-text('谢谢，明白了')", timeout=30_000)
        agent.click("#resolve")
        agent.click("#confirm-yes")
        citizen.wait_for_selector(".hl-status[hidden]", state="attached", timeout=30_000)
        conversation_id = citizen.evaluate(
            "Object.keys(localStorage).filter(k => k.endsWith(':conversation')).map(k => localStorage.getItem(k))[0]")
        assert httpx.get(f"{server.url}/api/v1/conversations/{conversation_id}").json()["status"] == "resolved"

        # English UI
        citizen.click(".hl-lang")
        assert citizen.locator(".hl-human").inner_text().endswith("Talk to a person")
        assert citizen.locator("html").get_attribute("lang") == "zh-CN"  # the host page is untouched
        assert errors == []
    finally:
        citizen_ctx.close()
        agent_ctx.close()


def test_keyboard_only_use(server, browser):
    context = browser.new_context(viewport={"width": 375, "height": 700}, locale="en-US")
    page = context.new_page()
    try:
        page.goto(server.url + "/")
        page.focus(".hl-launcher")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.shadowRoot.activeElement.id") == "hl-input"
        assert page.locator(".hl-human").inner_text().endswith("Talk to a person")  # navigator.language = en
        page.keyboard.type("Is PCR testing free?")
        page.keyboard.press("Enter")
        page.wait_for_selector(".hl-bot .hl-source")
        page.keyboard.press("Escape")
        assert page.locator("#hl-panel").is_hidden()
        assert page.evaluate("document.activeElement.shadowRoot.activeElement.className") == "hl-launcher"
        for selector in (".hl-launcher", ".hl-lang", ".hl-large-btn", ".hl-close", ".hl-thumb"):
            assert page.locator(selector).first.get_attribute("aria-label")
    finally:
        context.close()


XSS = 'xss-probe <img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b>'


def test_markup_in_a_message_stays_text_in_the_widget_and_the_console(server, browser):
    """The probe's XSS attempts, kept: markup a citizen types is shown as text to the citizen and to
    the agent reading the ticket and transcript; nothing runs, no element is created."""
    citizen_ctx = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN")
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    try:
        citizen = citizen_ctx.new_page()
        citizen.goto(server.url + "/")
        citizen.locator(".hl-launcher").click()
        ask(citizen, XSS)
        shown = citizen.locator(".hl-user p").filter(has_text="xss-probe").first  # pierces the shadow root
        shown.wait_for()
        assert shown.text_content() == XSS
        citizen.click(".hl-human")
        citizen.wait_for_selector(".hl-status:not([hidden]) .hl-queue")
        agent = agent_ctx.new_page()
        agent.goto(server.url + "/agents/")
        agent.fill("#username", "wang")
        agent.fill("#password", PASSWORD)
        agent.click("#login-form button[type=submit]")
        ticket = agent.locator(".ticket", has_text="xss-probe").first
        ticket.wait_for()
        ticket.click()
        agent.wait_for_selector(".transcript .turn.user:has-text('xss-probe')")
        assert "<img src=x" in agent.locator(".transcript").inner_text()
        for page in (citizen, agent):
            assert page.evaluate("window.__xss") is None
            assert page.locator("img[src='x']").count() == 0 and page.locator("b:text('bold')").count() == 0
        agent.screenshot(path=str(ARTIFACTS / "console-xss.png"))
    finally:
        citizen_ctx.close()
        agent_ctx.close()
