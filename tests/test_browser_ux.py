"""Issue 11 in headless Debian Chromium against a real server, at a phone (390x844) and a
desktop (1366x900) viewport: contrast computed from the browser's computed styles, the
emergency screen, the offline outbox, elder mode, embedding, the desk essentials.
Screenshots go to tests/artifacts/ (look at them: a passing assertion is not a usable screen)."""
from __future__ import annotations

from pathlib import Path

import http.server
import json
import re
import threading
import time

import httpx
import pytest

from bot.config import PROJECT_ROOT
from bot.conversations.staff import StaffDirectory
from bot.db import Database
from sqlalchemy import text
from tests.conftest import CHROMIUM, NOW, start_server, stop_server

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
PASSWORD = "agent-password-1"
VIEWPORTS = [pytest.param((390, 844), id="phone"), pytest.param((1366, 900), id="desktop")]
IDENTIFY_SECRET = "host-site-shared-secret-for-tests"
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
  // (finite ones only: an endless pulse never finishes; and never wait more than 3 s)
  const finite = anims.filter(a => a.effect && a.effect.getComputedTiming().endTime !== Infinity);
  await Promise.race([Promise.all(finite.map(a => a.finished.catch(() => null))), new Promise(r => setTimeout(r, 3000))]);
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
  return { inside: !!document.querySelector("#hotline-bot").contains(e) ||
             document.querySelector("#hotline-bot").shadowRoot?.contains(e) || false,
           cls: String(e.className), style: s.outlineStyle, width: parseFloat(s.outlineWidth),
           ratio: (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05) };
}
"""


class HostPages:
    """Two host sites on other ports: one the server allows (CORS), one it does not."""

    def __init__(self):
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.allowed = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.refused = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        for httpd in (self.allowed, self.refused):
            threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def url(self, httpd) -> str:
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    def close(self):
        for httpd in (self.allowed, self.refused):
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture(scope="module")
def hosts():
    pages = HostPages()
    yield pages
    pages.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, session_dir, engine, hosts):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('ux') / 'ux.db'}"
    db = Database(db_url)
    db.upgrade()
    StaffDirectory(db).create("wang", PASSWORD, "小王")
    StaffDirectory(db).create("zhang", PASSWORD, "张主任", "admin")
    db.dispose()
    live = start_server(session_dir / "var", {"DATABASE_URL": db_url, "HOTLINE_OPEN_READ_API": "1",
                                              "HOTLINE_WEB__ALLOWED_ORIGINS": hosts.url(hosts.allowed),
                                              "HOTLINE_WEB__IDENTIFY_SECRET": IDENTIFY_SECRET,
                                              # every browser here is 127.0.0.1: per-address limits would
                                              # stop the module's 20-odd citizens, not an abuser
                                              "HOTLINE_LIMITS__HANDOFFS_PER_IP": "1000/hour",
                                              "HOTLINE_LIMITS__CALLBACKS_PER_IP": "1000/hour",
                                              "HOTLINE_LIMITS__MESSAGES_PER_IP": "2000/minute",
                                              "HOTLINE_LIMITS__LOGINS_PER_IP": "1000/minute"})
    live.db_url = db_url
    yield live
    stop_server(live)


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


def tap_retry(page):
    """Lets messages through again and taps "not delivered · tap to retry" in the same breath. The widget also
    resends by itself (backoff 1, 2, 4… s): while a plain click waited for the bubble to stop moving (the
    history re-rendering after a reload), that timer sent the message first and removed the button, and the
    click timed out on a detached element (2026-12-02, full suite on a loaded machine). Until this call the
    route still fails those resends, so the button is there; ``force`` taps it without that wait."""
    page.unroute("**/web/api/messages")
    page.locator(".hl-retry").click(force=True)


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def record(name, value):
    """Measured numbers for the README, in tests/artifacts/ux-numbers.json."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "ux-numbers.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False))


def low_contrast(page, minimum):
    return [r for r in page.evaluate(CONTRAST_JS, "#hotline-bot") if r["ratio"] < minimum]


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
    checked = page.evaluate(CONTRAST_JS, "#hotline-bot")
    classes = " ".join(r["cls"] for r in checked)
    for part in ("hl-send", "hl-chip", "hl-human", "hl-title", "hl-source", "hl-link", "hl-queue"):
        assert part in classes, part  # the check really looked at these
    assert [r for r in checked if r["ratio"] < 4.5] == [], [r for r in checked if r["ratio"] < 4.5]
    send = next(r for r in checked if "hl-send" in r["cls"])
    assert send["ratio"] > 6
    record(f"contrast-min-{size[0]}", min(r["ratio"] for r in checked))
    record("contrast-send", send["ratio"])
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
    record(f"focus-ring-min-{size[0]}", round(min(r["ratio"] for r in rings), 2))
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
    colours = panel.evaluate("e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]")
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


def stored_copies(server, conversation_id, text):
    turns = httpx.get(f"{server.url}/api/v1/conversations/{conversation_id}").json()["turns"]
    return sum(1 for turn in turns if turn["role"] == "user" and turn["text"] == text)


CONVERSATION_JS = ("Object.keys(localStorage).filter(k => k.endsWith(':conversation'))"
                   ".map(k => localStorage.getItem(k))[0]")
W_JS = "document.querySelector('#hotline-bot').shadowRoot"
OUTBOX_JS = "JSON.parse(Object.keys(localStorage).filter(k => k.endsWith(':outbox')).map(k => localStorage.getItem(k))[0] || '[]')"


@pytest.mark.parametrize("size", VIEWPORTS)
def test_no_message_is_lost_or_stored_twice(server, page_at, size):
    """Offline: the message waits in a retry bubble (and in localStorage) and goes out by itself
    when the network is back. A send whose response is lost after the server stored it is
    retried after a reload with the same idempotency key: exactly one stored copy."""
    page = page_at(size)
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    ask(page, "核酸检测多少钱")
    conversation_id = page.evaluate(CONVERSATION_JS)

    offline_text = f"离线时发的消息 {size[0]}"
    page.context.set_offline(True)
    page.fill("#hl-input", offline_text)
    page.keyboard.press("Enter")
    failed = page.locator(".hl-user.hl-failed", has_text=offline_text)
    failed.wait_for()
    assert "未送达" in failed.locator(".hl-retry").inner_text()
    assert page.locator(".hl-conn").is_visible()
    assert [m["text"] for m in page.evaluate(OUTBOX_JS)] == [offline_text]
    assert page.input_value("#hl-input") == ""
    assert low_contrast(page, 4.5) == []
    shot(page, f"ux-offline-{size[0]}.png")
    page.context.set_offline(False)  # the browser's "online" event resends it
    page.wait_for_function(f"() => !{W_JS}.querySelector('.hl-failed') && {OUTBOX_JS}.length === 0")
    page.locator(".hl-conn").wait_for(state="hidden")
    page.locator(".hl-user:not(.hl-pending)", has_text=offline_text).wait_for()
    assert stored_copies(server, conversation_id, offline_text) == 1

    # the server stores it, the response never arrives
    lost_text = f"回复丢失的消息 {size[0]}"
    reached = []

    def store_then_drop(route):
        reached.append(route.request.post_data_json["client_message_id"])
        route.fetch()  # the server handles it...
        route.abort("connectionreset")  # ...and the browser sees a dropped connection

    page.route("**/web/api/messages", store_then_drop)
    page.fill("#hl-input", lost_text)
    page.keyboard.press("Enter")
    page.locator(".hl-user.hl-failed", has_text=lost_text).wait_for()
    assert stored_copies(server, conversation_id, lost_text) == 1
    tap_retry(page)
    page.wait_for_function(f"() => !{W_JS}.querySelector('.hl-failed') && {OUTBOX_JS}.length === 0")
    assert stored_copies(server, conversation_id, lost_text) == 1  # the retry was recognised, not stored again
    assert len(reached) == 1
    page.wait_for_function(f"t => [...{W_JS}.querySelectorAll('.hl-user p')].filter(p => p.textContent === t)"
                           ".length === 1", arg=lost_text)

    # never reached the server, and the page is reloaded before the network is back
    kept_text = f"重新加载后仍在的消息 {size[0]}"
    page.route("**/web/api/messages", lambda route: route.abort("internetdisconnected"))
    page.fill("#hl-input", kept_text)
    page.keyboard.press("Enter")
    page.locator(".hl-user.hl-failed", has_text=kept_text).wait_for()
    page.reload()
    page.locator(".hl-user.hl-failed .hl-retry", has_text="未送达").wait_for()  # from localStorage
    assert page.locator(".hl-user.hl-failed", has_text=kept_text).count() == 1
    assert page.locator(".hl-retry").is_visible()
    shot(page, f"ux-retry-after-reload-{size[0]}.png")
    assert stored_copies(server, conversation_id, kept_text) == 0
    tap_retry(page)
    page.wait_for_function(f"() => !{W_JS}.querySelector('.hl-failed') && {OUTBOX_JS}.length === 0")
    assert stored_copies(server, conversation_id, kept_text) == 1
    assert page.errors == []


@pytest.mark.parametrize("size", VIEWPORTS)
def test_long_text_is_counted_not_cut(server, page_at, size):
    page = page_at(size)
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    empty = page.locator("#hl-input").bounding_box()["height"]
    page.fill("#hl-input", "第一行\n第二行\n第三行")
    assert page.locator("#hl-input").bounding_box()["height"] > empty * 1.5  # grows with its text
    page.fill("#hl-input", "测" * 2500)  # a long paste is kept whole
    assert len(page.input_value("#hl-input")) == 2500
    assert "超出 500 字" in page.locator(".hl-count").inner_text()
    assert page.locator(".hl-send").is_disabled()
    assert low_contrast(page, 4.5) == []
    shot(page, f"ux-counter-{size[0]}.png")
    page.fill("#hl-input", "测" * 1900)
    assert page.locator(".hl-count").inner_text() == "1900/2000"
    assert page.locator(".hl-send").is_enabled()


TARGETS_JS = r"""
() => {
  const host = document.querySelector("#hotline-bot"), root = host.shadowRoot || host;
  return [...root.querySelectorAll("button, a[href], input, textarea")].filter(e => e.getClientRects().length)
    .map(e => { const r = e.getBoundingClientRect(); return { cls: String(e.className), text: e.textContent.slice(0, 20),
                                                                  w: Math.round(r.width), h: Math.round(r.height) }; });
}
"""


@pytest.mark.parametrize("size", VIEWPORTS)
def test_elder_mode(server, page_at, size):
    """长辈模式: 30 px body text, 60 px tap targets, >= 7:1 everywhere, topic tiles with icons,
    read-aloud through the browser's speechSynthesis, remembered on the device."""
    page = page_at(size)
    page.add_init_script("""
        window.__spoken = [];
        if (window.speechSynthesis) {
          const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
          window.speechSynthesis.speak = u => { window.__spoken.push({ text: u.text, lang: u.lang }); speak(u); };
        }""")
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    page.click(".hl-large-btn")
    assert page.get_attribute(".hl-large-btn", "aria-pressed") == "true"
    assert page.locator(".hl-topic .hl-topic-icon").count() >= 5  # the topic menu as tiles with icons
    for selector in (".hl-send", ".hl-human", ".hl-new", ".hl-topic >> nth=0"):  # all on one screen
        box = page.locator(selector).bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= size[1], selector
    assert page.locator(".hl-log").bounding_box()["height"] >= 100
    assert page.locator(".hl-human").evaluate("e => e.getClientRects().length === 1 && e.offsetHeight < 90")  # one line
    shot(page, f"ux-elder-topics-{size[0]}.png")
    answer = ask(page, "核酸检测多少钱")
    answer.locator(".hl-source").wait_for()
    page.reload()  # remembered on this device
    page.locator(BOT_ANSWERS).first.wait_for()
    assert "hl-elder" in page.get_attribute("#hotline-widget", "class")

    body = page.locator(".hl-bubble p").evaluate_all("ps => ps.map(p => parseFloat(getComputedStyle(p).fontSize))")
    assert body and min(body) >= 30
    checked = page.evaluate(CONTRAST_JS, "#hotline-bot")
    assert min(r["size"] for r in checked) >= 24, [r for r in checked if r["size"] < 24]
    assert [r for r in checked if r["ratio"] < 7] == [], [r for r in checked if r["ratio"] < 7]
    record(f"elder-contrast-min-{size[0]}", min(r["ratio"] for r in checked))
    record(f"elder-font-min-{size[0]}", min(r["size"] for r in checked))
    targets = page.evaluate(TARGETS_JS)
    small = [t for t in targets if t["h"] < 60 or t["w"] < 60]
    assert small == []
    record(f"elder-target-min-{size[0]}", min(min(t["h"], t["w"]) for t in targets))
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    header = page.locator(".hl-title").bounding_box()
    assert page.locator(".hl-title").evaluate("t => t.scrollWidth <= t.clientWidth")  # not truncated
    assert header["width"] > 0

    speak = page.locator(".hl-speak").last
    speak.click()
    spoken = page.evaluate("window.__spoken")
    assert spoken and spoken[-1]["lang"] == "zh-CN"
    assert spoken[-1]["text"] == page.locator(BOT_ANSWERS).last.locator("p").first.inner_text()
    shot(page, f"ux-elder-{size[0]}.png")

    page.click(".hl-large-btn")  # and back
    assert "hl-elder" not in page.get_attribute("#hotline-widget", "class")
    assert page.locator(".hl-speak").first.is_hidden()
    assert page.errors == []


def test_read_aloud_is_hidden_without_speech_synthesis(server, page_at):
    page = page_at((390, 844))
    page.add_init_script("delete window.speechSynthesis; delete window.SpeechSynthesisUtterance;")
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    page.click(".hl-large-btn")
    ask(page, "核酸检测多少钱").locator(".hl-source").wait_for()
    assert page.locator(".hl-speak").count() == 0
    assert page.errors == []


def test_voice_input_only_where_the_browser_has_it(server, page_at):
    with_api = page_at((390, 844))
    with_api.add_init_script("window.SpeechRecognition = window.SpeechRecognition || window.webkitSpeechRecognition;")
    with_api.goto(server.url + "/")
    with_api.click(".hl-launcher")
    has_api = with_api.evaluate("!!window.SpeechRecognition")
    with_api.click(".hl-large-btn")
    assert with_api.locator(".hl-mic").count() == (1 if has_api else 0)
    if has_api:
        box = with_api.locator(".hl-mic").bounding_box()
        assert box["height"] >= 60
    without = page_at((390, 844))
    without.add_init_script("delete window.SpeechRecognition; delete window.webkitSpeechRecognition;")
    without.goto(server.url + "/")
    without.click(".hl-launcher")
    without.click(".hl-large-btn")
    assert without.locator(".hl-mic").count() == 0


HOSTILE_CSS = """
* { color: #aaa !important; text-transform: uppercase !important; letter-spacing: 3px !important;
    font-family: serif !important; line-height: 3 !important; }
button { background: #ff0 !important; color: #f0f !important; border-radius: 0 !important; padding: 25px !important; }
h2 { color: red !important; font-size: 48px !important; }
div, section, header, form, nav { padding: 20px !important; background: #eee !important; border: 4px dotted red !important; }
p { display: none !important; }
"""


def host_page(server, extra=""):
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Host</title>"
            f"<style>{HOSTILE_CSS}</style></head><body><h2>A host site</h2><div>Its own content</div>"
            f"<script src='{server.url}/web/static/widget.js' data-server='{server.url}' {extra}></script>"
            f"</body></html>")


@pytest.mark.parametrize("size", VIEWPORTS)
def test_embedded_on_a_hostile_page(server, hosts, page_at, size):
    """Another origin, CSS written to break everything: the shadow tree keeps the widget as designed;
    the data-* options and the JS API work across origins."""
    hosts.pages["/hostile.html"] = host_page(
        server, "data-title='市卫健委在线咨询' data-color='#7a1f5c' data-position='left' data-open='true'")
    page = page_at(size)
    page.goto(hosts.url(hosts.allowed) + "/hostile.html")
    panel = page.locator("#hl-panel")
    panel.wait_for()  # data-open
    page.wait_for_function("() => document.querySelector('#hotline-bot').shadowRoot"
                           ".querySelector('.hl-root').style.visibility === ''")
    assert page.locator(".hl-title").inner_text() == "市卫健委在线咨询"
    style = page.locator(".hl-title").evaluate(
        "e => { const s = getComputedStyle(e); return [s.color, s.fontSize, s.textTransform, s.letterSpacing]; }")
    assert style[0] == "rgb(255, 255, 255)" and style[1] != "48px" and style[2] == "none" and style[3] == "normal"
    send = page.locator(".hl-send").evaluate("e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).paddingTop]")
    assert send[0] == "rgb(122, 31, 92)" and send[1] != "25px"  # the host's brand colour, not its button rule
    assert page.locator(".hl-bubble p").first.is_visible()  # the host hides every <p> of its own
    answer = ask(page, "核酸检测多少钱")  # a cross-origin POST with an Idempotency-Key (preflight)
    answer.locator(".hl-source").wait_for()
    assert low_contrast(page, 4.5) == []
    shot(page, f"ux-embedded-hostile-{size[0]}.png")

    page.evaluate("HotlineBot.close()")
    assert panel.is_hidden()
    launcher = page.locator(".hl-launcher").bounding_box()
    assert launcher["x"] < size[0] / 2  # data-position=left
    page.evaluate("HotlineBot.setLanguage('en')")
    page.evaluate("HotlineBot.open()")
    assert panel.is_visible()
    assert page.locator(".hl-human").inner_text().endswith("Talk to a person")
    assert page.evaluate("HotlineBot.isOpen()") is True
    assert page.locator("h2", has_text="A host site").evaluate("e => getComputedStyle(e).color") == "rgb(255, 0, 0)"
    assert page.errors == []


def test_origin_not_allowed_says_so(server, hosts, page_at):
    hosts.pages["/refused.html"] = host_page(server)
    page = page_at((390, 844))
    page.goto(hosts.url(hosts.refused) + "/refused.html")
    page.click(".hl-launcher")
    banner = page.locator(".hl-conn.hl-blocked")
    banner.wait_for()
    assert hosts.url(hosts.refused) in banner.inner_text() and "未获准" in banner.inner_text()
    page.fill("#hl-input", "核酸检测多少钱")
    page.keyboard.press("Enter")
    page.locator(".hl-user.hl-failed").wait_for()  # kept, not lost
    assert "网络不稳定" not in page.locator("#hl-panel").inner_text()
    assert banner.is_visible()
    assert low_contrast(page, 4.5) == []
    shot(page, "ux-origin-refused-390.png")


def open_handoff(server, user, question):
    """A citizen (over HTTP) asks a question, then asks for a person."""
    with server.client() as client:
        for text in (question, "/ask_human"):
            r = client.post("/web/api/messages", json={"user_id": user, "text": text})
            assert r.status_code == 200, r.text
        return r.json()["conversation_id"]


def login(page, server, username="wang"):
    page.goto(server.url + "/agents/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.locator(".ticket").first.wait_for()


def parked_console_polls(server) -> float:
    """The server's own count (``hotline_long_polls_parked{kind="console"}`` summed over its workers)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "hotline_long_polls_parked" and sample.labels.get("kind") == "console")


@pytest.mark.parametrize("size", [pytest.param((390, 844), id="phone"), pytest.param((1366, 900), id="desktop"),
                                  pytest.param((1366, 768), id="laptop"), pytest.param((1920, 1080), id="wide")])
def test_desk_essentials(server, page_at, size):
    """Ticking wait timers, the question on the card, human words first (codes in a details line),
    resolve / hand back disabled before the claim and confirmed after it, no overlaps, and one
    long poll at a time however often the agent clicks (the old one is aborted; checked at one size:
    the request logic does not depend on the layout, and the clicks take real time)."""
    tag = f"{size[0]}x{size[1]}"
    question = f"外地返回需要隔离几天 {tag}"
    conversation_id = open_handoff(server, f"desk-citizen-{tag}-0001", question)
    open_handoff(server, f"desk-citizen-{tag}-0002", f"健康码变黄了怎么办 {tag}")
    page = page_at(size)
    polls = {"started": 0, "finished": 0, "aborted": 0}
    is_poll = lambda r: "/agents/api/updates" in r.url  # noqa: E731
    page.on("request", lambda r: is_poll(r) and polls.__setitem__("started", polls["started"] + 1))
    page.on("requestfinished", lambda r: is_poll(r) and polls.__setitem__("finished", polls["finished"] + 1))
    page.on("requestfailed", lambda r: is_poll(r) and polls.__setitem__("aborted", polls["aborted"] + 1))
    page.clock.install()  # the page's timers run on a clock the test can move forward
    login(page, server)

    card = page.locator(".ticket", has_text=question)
    card.wait_for()
    assert card.locator(".question").inner_text() == f"“{question}”"  # the question, not 转人工
    assert "转人工" in card.locator(".reason").inner_text()
    timer = card.locator(".badge.wait")
    first = timer.inner_text()
    page.clock.run_for(2200)
    assert timer.inner_text() != first  # ticks without a server round trip

    card.click()
    page.locator(".fact-reason", has_text="市民要求转人工").wait_for()
    assert page.locator(".ticket-question").inner_text().endswith(question)
    assert "reason=user_request" in page.locator(".fact-codes").text_content()
    assert "user_request" not in page.locator(".ticket-head h2").inner_text()
    assert page.locator("#resolve").is_disabled() and page.locator("#hand-back").is_disabled()
    assert low_contrast_console(page) == []
    shot(page, f"ux-desk-ticket-{tag}.png")

    if size == (1366, 900):  # ten clicks between tickets: at most one long poll left waiting, the others aborted
        other = page.locator(".ticket").filter(has_not_text=question).first
        for i in range(10):
            (other if i % 2 == 0 else card).click()
            page.wait_for_timeout(150)
        page.locator(".ticket-question", has_text=question).wait_for()
        page.wait_for_timeout(1000)
        waiting = polls["started"] - polls["finished"] - polls["aborted"]
        assert waiting <= 1, polls
        assert polls["aborted"] >= 5, polls
        # ...and on the server: the aborted polls are gone there too, not parked until their deadline
        deadline = time.monotonic() + 5
        while (parked := parked_console_polls(server)) > 1:
            assert time.monotonic() < deadline, f"{parked} console long polls still parked on the server"
            time.sleep(0.1)
        record(f"desk-polls-{tag}", dict(polls, waiting=waiting, parked_on_server=parked))

    page.click("#claim")
    page.locator("#reply-text").wait_for()
    assert page.locator("#resolve").is_enabled()
    if size[0] > 1000:  # the reply box sits between transcript and candidates, overlapping neither
        reply, kb = page.locator(".reply").bounding_box(), page.locator(".kb").bounding_box()
        transcript = page.locator("#transcript").bounding_box()
        assert transcript["y"] + transcript["height"] <= reply["y"] and reply["y"] + reply["height"] <= kb["y"]
    page.click("#resolve")
    page.locator("#confirm-yes").wait_for()
    shot(page, f"ux-desk-confirm-{tag}.png")
    page.click("#confirm-no")  # one stray click changes nothing
    assert httpx.get(f"{server.url}/api/v1/conversations/{conversation_id}").json()["status"] == "claimed"
    page.click("#resolve")
    page.click("#confirm-yes")
    page.locator(".detail .empty", has_text="已关闭").wait_for()
    assert httpx.get(f"{server.url}/api/v1/conversations/{conversation_id}").json()["status"] == "resolved"
    assert page.errors == []


def low_contrast_console(page):
    js = CONTRAST_JS.replace("const start = host.shadowRoot || host;", "const start = host;")
    return [r for r in page.evaluate(js, "#app") if r["ratio"] < 4.5]


@pytest.mark.parametrize("size", VIEWPORTS)
def test_chat_basics(server, page_at, size):
    """Timestamps and names, stale quick replies disabled, 👎 asks why (stored with the vote),
    and a new conversation for the next person on a shared phone."""
    page = page_at(size)
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    ask(page, "How long does it take to get PCR results?")
    first = page.locator(BOT_ANSWERS).nth(0)  # (ask returns .last, which moves on)
    assert re.fullmatch(r"\d{2}:\d{2}", first.locator(".hl-time").inner_text())
    assert "Assistant" in first.locator(".hl-name").inner_text() or "智能助手" in first.locator(".hl-name").inner_text()
    assert re.fullmatch(r"\d{2}:\d{2}", page.locator(".hl-user .hl-time").last.inner_text())
    chips = first.locator(".hl-quick button")
    assert chips.count() >= 1 and chips.first.is_enabled()
    title = chips.first.inner_text()
    chips.first.click()
    page.locator(".hl-user p", has_text=title).wait_for()
    second = page.locator(BOT_ANSWERS).nth(1)
    second.wait_for()
    for i in range(chips.count()):
        assert chips.nth(i).is_disabled()  # stale: the conversation has moved on
    if second.locator(".hl-quick button").count():
        assert second.locator(".hl-quick button").first.is_enabled()

    second.locator(".hl-thumb").nth(1).click()  # 👎
    reasons = second.locator(".hl-reasons")
    reasons.wait_for()
    assert reasons.locator("button").count() == 4
    assert low_contrast(page, 4.5) == []
    shot(page, f"ux-chat-basics-{size[0]}.png")
    reasons.locator("button[data-reason='outdated']").click()
    reasons.wait_for(state="hidden")
    turn_id = int(second.locator(".hl-feedback").get_attribute("data-turn-id"))
    db = Database(server.db_url)
    try:
        with db.read() as session:
            row = session.execute(text("select value, reason from turn_feedback where turn_id = :t"), {"t": turn_id}).one()
    finally:
        db.dispose()
    assert tuple(row) == ("down", "outdated")

    old = page.evaluate(CONVERSATION_JS)
    page.click(".hl-new")
    assert page.locator(BOT_ANSWERS).count() == 0 and page.locator(".hl-user").count() == 0
    assert page.locator(".hl-welcome").count() == 1
    ask(page, "核酸检测多少钱")
    new = page.evaluate(CONVERSATION_JS)
    assert new and new != old
    page.reload()
    page.locator(BOT_ANSWERS).first.wait_for()
    assert page.locator(".hl-user").count() == 1  # only the new conversation's transcript
    assert page.errors == []


@pytest.mark.parametrize("size", VIEWPORTS)
def test_waiting_is_honest(server, page_at, size):
    """Nobody on duty: no minutes promised; after a callback request the banner says which number
    will be called and the offer is gone; the agent sees the callback on the ticket card."""
    page = page_at(size)
    page.goto(server.url + "/")
    page.click(".hl-launcher")
    ask(page, "核酸检测多少钱")
    page.click(".hl-human")
    status = page.locator(".hl-status:not([hidden])")
    status.wait_for()
    assert "分钟" not in status.inner_text() and "没有人工客服在线" in status.inner_text()
    page.locator(".hl-offer button").click()
    page.fill("#hl-phone", "13812341234")
    page.click(".hl-callback button[type=submit]")
    page.locator(".hl-callback-set").wait_for()
    assert "138****1234" in page.locator(".hl-callback-set").inner_text()
    assert page.locator(".hl-status .hl-link").count() == 0
    assert page.locator(".hl-offer button").is_disabled()
    page.reload()  # the server remembers it, so the banner too
    page.locator(".hl-callback-set").wait_for()
    assert page.locator(".hl-status .hl-link").count() == 0
    assert low_contrast(page, 4.5) == []
    shot(page, f"ux-callback-set-{size[0]}.png")
    if size[0] > 1000:  # the agent sees the callback with the conversation, not as an unrelated item
        agent = page_at(size)
        login(agent, server)
        question = page.locator(".hl-user p").first.inner_text()
        card = agent.locator(".ticket", has_text=question).filter(has_text="已留电话").first
        card.click()
        agent.locator(".fact-callback", has_text="138****1234").wait_for()
        assert agent.locator(".transcript .turn.user").count() >= 2


def test_urgent_ticket_alarm_repeats_until_claimed(server, page_at):
    """An emergency ticket rings again and again (not one beep) until an agent claims it."""
    with server.client() as client:
        assert client.post("/web/api/messages", json={"user_id": "urgent-citizen-0001", "text": MEDICAL}).status_code == 200
    page = page_at((1366, 900))
    page.clock.install()  # the siren's 3 s repeats, run forward instead of waited for
    login(page, server)
    bar = page.locator("#urgent-bar")
    bar.wait_for()
    page.clock.run_for(3100)
    page.wait_for_function("() => Number(document.querySelector('#urgent-bar').dataset.rings) >= 2", timeout=10_000)
    assert "#" in bar.inner_text()
    shot(page, "ux-desk-urgent-1366.png")
    while page.locator(".ticket.urgent:not(.mine)").count():  # (other tests of the module left some)
        card = page.locator(".ticket.urgent:not(.mine)").first
        handoff_id = card.get_attribute("data-handoff-id")
        card.click()
        page.locator("#claim").click()
        page.locator("#reply-text").wait_for()
        page.locator(f".ticket.mine[data-handoff-id='{handoff_id}']").wait_for()  # the queue caught up
    bar.wait_for(state="hidden")
    rings = int(bar.get_attribute("data-rings"))
    page.clock.run_for(6500)  # two more periods of the siren
    assert int(bar.get_attribute("data-rings")) == rings  # silent once claimed
    assert page.errors == []


@pytest.mark.parametrize("size", VIEWPORTS)
def test_rating_after_an_agent_resolved(server, page_at, size):
    citizen = page_at(size)
    citizen.goto(server.url + "/")
    citizen.click(".hl-launcher")
    question = f"我想问一下居家隔离怎么申请 {size[0]}"
    ask(citizen, question)
    citizen.click(".hl-human")
    citizen.locator(".hl-status:not([hidden])").wait_for()
    agent = page_at((1366, 900))
    login(agent, server)
    agent.locator(".ticket", has_text=question).click()
    agent.click("#claim")
    agent.fill("#reply-text", "您好，居家隔离请联系所在社区。")
    agent.click("#send-reply")
    citizen.locator(".hl-agent", has_text="居家隔离请联系").wait_for(timeout=30_000)
    assert citizen.locator(".hl-agent .hl-avatar").count() == 1
    agent.click("#resolve")
    agent.click("#confirm-yes")
    rating = citizen.locator(".hl-rating")
    rating.wait_for(timeout=30_000)
    assert "小王" in rating.inner_text()
    assert rating.locator(".hl-send").is_disabled()  # no score yet
    rating.locator(".hl-star").nth(3).click()
    rating.locator("textarea").fill("很耐心")
    assert low_contrast(citizen, 4.5) == []
    shot(citizen, f"ux-rating-{size[0]}.png")
    rating.locator(".hl-send").click()
    citizen.locator(".hl-rated").wait_for()
    conversation_id = citizen.evaluate(CONVERSATION_JS)
    db = Database(server.db_url)
    try:
        with db.read() as session:
            row = session.execute(text("select score, comment from ratings where conversation_id = :c"),
                                  {"c": conversation_id}).one()
    finally:
        db.dispose()
    assert tuple(row) == (4, "很耐心")
    citizen.reload()
    citizen.locator(BOT_ANSWERS).first.wait_for()
    assert citizen.locator(".hl-rating").count() == 0  # asked once
    assert citizen.errors == [] and agent.errors == []


@pytest.mark.parametrize("size", [pytest.param((390, 844), id="phone"), pytest.param((1366, 900), id="desktop")])
def test_desk_tools(server, page_at, size):
    """Canned replies (an admin adds one, it goes out in the ticket's language), a private note the
    citizen never sees, transfer to a colleague, and the citizen's earlier conversations."""
    tag = f"{size[0]}"
    user = f"tools-citizen-{tag}-000001"
    with server.client() as client:
        client.post("/web/api/messages", json={"user_id": user, "text": f"上周问过的问题 {tag}"})
        client.post("/web/api/messages", json={"user_id": user, "text": f"疫苗第三针什么时候打 {tag}",
                                                "new_conversation": True})
        r = client.post("/web/api/messages", json={"user_id": user, "text": "/ask_human"})
        conversation_id = r.json()["conversation_id"]
    admin = page_at(size)
    login(admin, server, "zhang")
    admin.locator(".ticket", has_text=f"疫苗第三针什么时候打 {tag}").click()
    history = admin.locator(".history")
    history.wait_for()
    assert f"上周问过的问题 {tag}" in history.inner_text()
    admin.click("#claim")
    admin.locator("#reply-text").wait_for()
    admin.locator(".canned-admin summary").click()
    admin.fill("#canned-title", f"第三针 {tag}")
    admin.fill("#canned-zh", "加强针请以当地接种点通知为准。")
    admin.fill("#canned-en", "For booster shots, follow your local vaccination site.")
    admin.click("#canned-save")
    admin.locator(f"#canned option:has-text('第三针 {tag}')").wait_for(state="attached")
    admin.select_option("#canned", label=f"第三针 {tag}")
    assert admin.input_value("#reply-text") == "加强针请以当地接种点通知为准。"  # the ticket is in Chinese
    admin.click("#send-reply")
    admin.locator(".transcript .turn.agent", has_text="加强针").wait_for()
    admin.fill("#reply-text", f"内部：此人上周也问过 {tag}")
    admin.click("#save-note")
    admin.locator(".transcript .turn.note", has_text="内部：").wait_for()
    assert "Private note" in admin.locator(".transcript .turn.note .who").inner_text()
    shot(admin, f"ux-desk-tools-{tag}.png")
    with server.client() as client:
        seen = client.get(f"/web/api/conversations/{conversation_id}/turns",
                          params={"user_id": user, "after": 0}).json()
    texts = [t["text"] for t in seen["turns"]]
    assert any("加强针" in t for t in texts) and not any("内部：" in t for t in texts)  # notes are staff-only

    # an admin edits and deletes canned replies
    entry = admin.locator("#canned-list li", has_text=f"第三针 {tag}")
    entry.locator(".canned-edit").click()
    admin.fill("#canned-zh", "加强针请以社区通知为准。")
    admin.click("#canned-save")
    admin.wait_for_function("() => document.querySelector('#canned-title').value === ''")  # saved: the form clears
    admin.select_option("#canned", label=f"第三针 {tag}")
    assert admin.input_value("#reply-text") == "加强针请以社区通知为准。"
    admin.fill("#reply-text", "")
    entry.locator(".canned-delete").click()
    assert entry.count() == 1  # the first click only arms it
    entry.locator(".canned-delete").click()
    entry.wait_for(state="detached")
    assert admin.locator(f"#canned option:has-text('第三针 {tag}')").count() == 0
    admin.select_option("#transfer-to", value="wang")
    admin.click("#transfer")
    admin.locator(".detail .empty", has_text="已转交").wait_for()
    agent = page_at(size)
    login(agent, server)
    agent.locator(".ticket.mine", has_text=f"疫苗第三针什么时候打 {tag}").click()
    agent.locator(".transcript .turn.note", has_text="内部：").wait_for()  # the colleague sees the note
    assert agent.locator("#resolve").is_enabled()
    assert admin.errors == [] and agent.errors == []


def test_identified_user_of_the_host_site(server, hosts, page_at):
    """HotlineBot.identify with the HMAC the host's server computes: the conversation belongs to
    the host's user id (u:...), across devices; a forged signature is refused with its reason."""
    from connectors.web.views import identity_signature

    signature = identity_signature(IDENTIFY_SECRET, "citizen-42")
    hosts.pages["/account.html"] = host_page(server).replace(
        "</body>", f"<script>HotlineBot.identify({{userId: 'citizen-42', signature: '{signature}'}});</script></body>")
    page = page_at((1366, 900))
    page.goto(hosts.url(hosts.allowed) + "/account.html")
    page.click(".hl-launcher")
    ask(page, "核酸检测多少钱").locator(".hl-source").wait_for()
    conversation_id = page.evaluate("Object.entries(localStorage).filter(([k]) => k.endsWith(':conversation:u:citizen-42'))"
                                    ".map(([, v]) => v)[0]")
    db = Database(server.db_url)
    try:
        with db.read() as session:
            owner = session.execute(text("select user_id from conversations where id = :c"), {"c": conversation_id}).scalar()
    finally:
        db.dispose()
    assert owner == "u:citizen-42"
    other_device = page_at((390, 844))  # the same user on another device sees the same conversation
    other_device.goto(hosts.url(hosts.allowed) + "/account.html")
    other_device.click(".hl-launcher")
    ask(other_device, "健康码变黄了怎么办")
    assert other_device.evaluate("Object.entries(localStorage).filter(([k]) => k.endsWith(':conversation:u:citizen-42'))"
                                 ".map(([, v]) => v)[0]") == conversation_id
    forged = "0" * 64
    hosts.pages["/forged.html"] = host_page(server).replace(
        "</body>", f"<script>HotlineBot.identify({{userId: 'citizen-42', signature: '{forged}'}});</script></body>")
    page.goto(hosts.url(hosts.allowed) + "/forged.html")
    page.evaluate("HotlineBot.open()")  # (still open from before: the open state is remembered)
    page.fill("#hl-input", "我是谁")
    page.keyboard.press("Enter")
    page.locator(".hl-user.hl-failed .hl-error", has_text="signature").wait_for()
    assert page.errors == []


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory, session_dir, engine):
    """A hotline whose agents start three hours after the server's clock (NOW, 16:00 in Shanghai), every day."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    start = (NOW.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo("Asia/Shanghai")) + dt.timedelta(hours=3))
    end = start + dt.timedelta(minutes=30)
    span = f"{start:%H:%M}-{end:%H:%M}"
    db_url = f"sqlite:///{tmp_path_factory.mktemp('closed') / 'closed.db'}"
    db = Database(db_url)
    db.upgrade()
    db.dispose()
    live = start_server(session_dir / "var", {
        "DATABASE_URL": db_url,
        "HOTLINE_DESK__HOURS": json.dumps({d: span for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})})
    live.opens_at = f"{start:%H:%M}"
    yield live
    stop_server(live)


@pytest.mark.parametrize("size", VIEWPORTS)
def test_outside_opening_hours_no_eta_but_when_we_are_back(closed_server, page_at, size):
    page = page_at(size)
    page.goto(closed_server.url + "/")
    page.click(".hl-launcher")
    ask(page, "核酸检测多少钱")
    page.click(".hl-human")
    status = page.locator(".hl-status:not([hidden])")
    status.wait_for()
    text = status.inner_text()
    assert "不是人工服务时间" in text and closed_server.opens_at in text and "分钟" not in text
    assert status.locator(".hl-link", has_text="留言回电").is_visible()
    offer = page.locator(".hl-notice", has_text="留言回电").last
    assert "不是人工服务时间" in offer.inner_text() and "没有人工客服在线" not in offer.inner_text()
    assert low_contrast(page, 4.5) == []
    shot(page, f"ux-closed-{size[0]}.png")
