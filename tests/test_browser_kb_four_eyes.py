"""The four-eyes rule in the console (``HOTLINE_KB__FOUR_EYES=1``), in headless Debian Chromium on a real server.

The publish list ticked the editor's own drafts like any other, and the publish was then refused (403) for the
very drafts the list had offered. Now they are listed unticked and disabled, saying another editor publishes
them; a second editor sees them ticked and publishes them."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import CHROMIUM, stop_server
from tests.test_browser_kb_editor import PASSWORD, citizen_answer, start_editor_server
from tests.test_browser_widget import ARTIFACTS

ENTRY = "testing.pcr_fee"
DRAFT = "【四眼】单人单检每次10元。"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("server_side_checks"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, session_dir, engine):
    live = start_editor_server(tmp_path_factory, session_dir, {"edna": "编辑小李", "rev": "审核老王"},
                               {"HOTLINE_KB__FOUR_EYES": "1"})
    yield live
    stop_server(live)


def _editor(browser, server, username: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(server.url + "/agents/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector(f"#kb-item-{ENTRY.replace('.', '-')}")
    return context, page


def test_own_drafts_are_not_offered_for_publishing_under_the_four_eyes_rule(server, browser):
    context, page = _editor(browser, server, "edna")
    try:
        page.click(f"#kb-item-{ENTRY.replace('.', '-')}")
        expect(page.locator("#kb-title")).to_have_text(ENTRY)
        page.fill('[data-field="answer.zh"]', DRAFT)
        page.click("#kb-save")
        expect(page.locator("#kb-state")).to_contain_text("草稿", timeout=60_000)
        page.click("#kb-publish")
        own = page.locator(f'#kb-publish-box input[data-entry="{ENTRY}"]')
        expect(own).to_be_disabled()
        expect(own).not_to_be_checked()
        expect(page.locator("#kb-publish-box")).to_contain_text("another editor publishes your draft")
        expect(page.locator("#kb-publish-confirm")).to_be_disabled()
        expect(page.locator("#kb-publish-confirm")).to_contain_text("(0)")
        page.screenshot(path=str(ARTIFACTS / "kb_editor_four_eyes.png"))
        assert page.errors == []
    finally:
        context.close()
    context, page = _editor(browser, server, "rev")  # the second editor reviews and publishes it
    try:
        page.click("#kb-publish")
        theirs = page.locator(f'#kb-publish-box input[data-entry="{ENTRY}"]')
        expect(theirs).to_be_enabled()
        expect(theirs).to_be_checked()
        page.click("#kb-publish-confirm")
        expect(page.locator("#kb-publish-box")).to_be_hidden(timeout=60_000)
        assert page.errors == []
    finally:
        context.close()
    assert DRAFT in citizen_answer(browser, server)
