"""Issue 11 in headless Debian Chromium against a real server, at a phone (390x844) and a
desktop (1366x900) viewport: contrast computed from the browser's computed styles, the
emergency screen, the offline outbox, elder mode, embedding, the desk essentials.
Screenshots go to tests/artifacts/ (look at them: a passing assertion is not a usable screen)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import PROJECT_ROOT
from bot.conversations.staff import StaffDirectory
from bot.db import Database
from tests.conftest import start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
PASSWORD = "agent-password-1"
VIEWPORTS = [pytest.param((390, 844), id="phone"), pytest.param((1366, 900), id="desktop")]
MEDICAL = "孩子把奶奶的降压药吃了一大把"
MENTAL = "我把攒了很久的安眠药都放在床头了，今晚睡下就不用再醒了"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install -y chromium"),
]

# Every visible element with its own text: WCAG contrast of its colour (blended by the opacity of
# its ancestors) against the first opaque background up the tree (crossing shadow roots).
CONTRAST_JS = r"""
async (selector) => {
  // measure the settled screen, not the fade-in of a new message
  const anims = [...document.getAnimations(), ...(document.querySelector(selector).shadowRoot?.getAnimations() || [])];
  await Promise.all(anims.map(a => a.finished.catch(() => null)));
  function parse(c) {
    const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  }
  function lum(c) {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  }
  function ratio(a, b) { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
  function up(node) { return node.parentElement || (node.getRootNode && node.getRootNode().host) || null; }
  function background(node) {
    for (let n = node; n; n = up(n)) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  }
  function opacity(node) { let o = 1; for (let n = node; n; n = up(n)) o *= Number(getComputedStyle(n).opacity); return o; }
  function* walk(node) {
    for (const child of node.children) { yield child; if (child.shadowRoot) yield* walk(child.shadowRoot); yield* walk(child); }
  }
  const host = document.querySelector(selector);
  const start = host.shadowRoot || host;
  const out = [];
  for (const e of [host, ...walk(start)]) {
    const own = [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join("").trim();
    if (!own || !/[\p{L}\p{N}]/u.test(own)) continue;
    const s = getComputedStyle(e);
    if (!e.getClientRects().length || s.visibility === "hidden" || e.closest?.(".hl-sr")) continue;
    const bg = background(e), fg = parse(s.color), o = opacity(e) * fg.a;
    const mixed = { r: fg.r * o + bg.r * (1 - o), g: fg.g * o + bg.g * (1 - o), b: fg.b * o + bg.b * (1 - o) };
    out.push({ text: own.slice(0, 40), cls: String(e.className), ratio: Math.round(ratio(mixed, bg) * 100) / 100,
               size: parseFloat(s.fontSize) });
  }
  return out;
}
"""

FOCUS_JS = r"""
() => {
  function parse(c) { const p = c.match(/rgba?\(([^)]+)\)/)[1].split(/[ ,\/]+/).map(Number); return { r: p[0], g: p[1], b: p[2] }; }
  function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); }
  function up(node) { return node.parentElement || (node.getRootNode && node.getRootNode().host) || null; }
  let e = document.activeElement; while (e && e.shadowRoot && e.shadowRoot.activeElement) e = e.shadowRoot.activeElement;
  const s = getComputedStyle(e);
  let bg = null;
  for (let n = up(e); n; n = up(n)) { const c = getComputedStyle(n).backgroundColor; if (!/rgba\(.*, 0\)$/.test(c) && c !== "transparent") { bg = parse(c); break; } }
  bg = bg || { r: 255, g: 255, b: 255 };
  const x = lum(parse(s.outlineColor)), y = lum(bg);
  return { inside: !!document.querySelector("#hotline-widget").contains(e) ||
             document.querySelector("#hotline-widget").shadowRoot?.contains(e) || false,
           cls: String(e.className), style: s.outlineStyle, width: parseFloat(s.outlineWidth),
           ratio: (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05) };
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, session_dir, engine):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('ux') / 'ux.db'}"
    db = Database(db_url)
    db.upgrade()
    StaffDirectory(db).create("wang", PASSWORD, "小王")
    db.dispose()
    live = start_server(session_dir / "var", {"DATABASE_URL": db_url, "HOTLINE_OPEN_READ_API": "1"})
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page_at(browser, request):
    contexts = []

    def make(size, locale="zh-CN"):
        context = browser.new_context(viewport={"width": size[0], "height": size[1]}, locale=locale)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()


BOT_ANSWERS = ".hl-bot:not(.hl-typing):not(.hl-welcome)"


def ask(page, text):
    before = page.locator(BOT_ANSWERS).count()
    page.fill("#hl-input", text)
    page.keyboard.press("Enter")
    page.locator(BOT_ANSWERS).nth(before).wait_for()
    return page.locator(BOT_ANSWERS).last


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def low_contrast(page, minimum):
    return [r for r in page.evaluate(CONTRAST_JS, "#hotline-widget") if r["ratio"] < minimum]


@pytest.mark.parametrize("size", VIEWPORTS)
def test_every_text_and_focus_ring_has_contrast(server, page_at, size):
    """Button colours are the designer's, not inherited (the old ``color: inherit`` made 发送 2.5:1),
    and the focus ring is visible on every surface."""
    page = page_at(size)
    page.goto(server.url + "/")
    assert low_contrast(page, 4.5) == []  # the launcher
    page.click(".hl-launcher")
    answer = ask(page, "核酸检测多少钱")
    answer.locator(".hl-source").wait_for()
    page.click(".hl-human")
    page.wait_for_selector(".hl-status:not([hidden]) .hl-queue")
    page.fill("#hl-input", "还有问题")  # the send button with text in the box
    checked = page.evaluate(CONTRAST_JS, "#hotline-widget")
    classes = " ".join(r["cls"] for r in checked)
    for part in ("hl-send", "hl-chip", "hl-human", "hl-title", "hl-source", "hl-link", "hl-queue"):
        assert part in classes, part  # the check really looked at these
    assert [r for r in checked if r["ratio"] < 4.5] == [], [r for r in checked if r["ratio"] < 4.5]
    send = next(r for r in checked if "hl-send" in r["cls"])
    assert send["ratio"] > 6
    shot(page, f"ux-contrast-{size[0]}.png")

    rings = []
    page.focus(".hl-lang")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focused by the keyboard, so :focus-visible applies
    for _ in range(30):  # header tools, status link, log, links and chips, input, send
        ring = page.evaluate(FOCUS_JS)
        if ring["inside"]:
            rings.append(ring)
        if "hl-send" in ring["cls"]:
            break
        page.keyboard.press("Tab")
    seen = " ".join(r["cls"] for r in rings)
    for part in ("hl-lang", "hl-close", "hl-link", "hl-chip", "hl-input", "hl-send"):
        assert part in seen, (part, seen)
    for ring in rings:
        assert ring["style"] != "none" and ring["width"] >= 2, ring
        assert ring["ratio"] >= 4.5, ring
    assert page.errors == []


@pytest.mark.parametrize("size", VIEWPORTS)
def test_emergency_screen_is_pinned_until_dismissed(server, page_at, size):
    page = page_at(size)
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    ask(page, MEDICAL)
    panel = page.locator(".hl-emergency")
    panel.wait_for()
    assert panel.locator("a[href='tel:120']").is_visible()
    assert panel.locator("a[href='tel:12356']").count() == 0
    box = panel.locator("a[href='tel:120']").bounding_box()
    assert box["height"] >= 44  # a thumb-sized tap target
    # no wait estimate and no callback offer in the same breath
    status = page.locator(".hl-status").inner_text() if page.locator(".hl-status").is_visible() else ""
    assert "分钟" not in status and "留言" not in status
    assert page.locator(".hl-link").count() == 0
    assert "留言回电" not in page.locator(".hl-log").inner_text()
    assert low_contrast(page, 4.5) == []
    # red panel, white text
    colours = page.evaluate("() => { const s = getComputedStyle(document.querySelector('.hl-emergency'));"
                            " return [s.backgroundColor, s.color]; }")
    assert colours == ["rgb(179, 38, 30)", "rgb(255, 255, 255)"]
    shot(page, f"ux-emergency-{size[0]}.png")

    # it stays above the conversation: more messages, a reload
    ask(page, "我该怎么办")
    assert panel.is_visible()
    panel_box, log_box = panel.bounding_box(), page.locator(".hl-log").bounding_box()
    assert panel_box["y"] + panel_box["height"] <= log_box["y"] + 1
    page.reload()
    page.locator(".hl-emergency a[href='tel:120']").wait_for()
    page.click(".hl-dismiss")
    assert page.locator(".hl-emergency").is_hidden()
    page.reload()
    page.locator(BOT_ANSWERS).first.wait_for()
    assert page.locator(".hl-emergency").is_hidden()  # dismissed stays dismissed on this device
    assert page.locator(".hl-emergency-msg a[href='tel:120']").count() == 1  # the transcript keeps it
    assert page.errors == []


def test_mental_health_crisis_offers_12356(server, page_at):
    page = page_at((390, 844))
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    ask(page, MENTAL)
    page.locator(".hl-emergency a[href='tel:12356']").wait_for()
    assert page.locator(".hl-emergency a[href='tel:120']").count() == 1
    shot(page, "ux-emergency-mental-390.png")
