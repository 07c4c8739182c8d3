"""The dashboard in headless Debian Chromium over a simulated day (bench/simulate.py through the
real HTTP API of a real server): charts render with data, the date filter changes the numbers,
CSV exports download. Screenshots go to tests/artifacts/."""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import httpx
import pytest

from bench.live import stop_server
from bench.simulate import PASSWORD, SUPERVISOR, simulate
from bot.config import PROJECT_ROOT
from tests.conftest import CHROMIUM, hold_first, release

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
DAY = dt.date(2026, 12, 1)
LEAD = 30.0  # real seconds from spawning the server to the simulated 23:00 the evening before DAY
NIGHT = 7 * 3600 / 8640  # 23:00 → 06:00 of simulated time at 8640×: 2.9 real seconds
PATIENCE = 1.5  # real seconds a waiting citizen stays at least: an agent's look and claim (0 claims in CI without)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, engine):
    """A simulated day (150 conversations, one day in 10 s of real time); the server stays up. The day
    starts 30 s after the server is spawned: it is ready in a few seconds from the shared model and
    index cache, which ``engine`` fills (2–4 s alone; with four test workers busy beside it 11.4 s on
    one machine and 16.6 s on a slower one: the lead was 8, then 15 s; 21.3 s once inside CI: 22 s; 25.8 s
    inside CI on the slow machine of 2026-12-03 evening, whose suite took 317–355 s: 30 s). This fixture
    took 72 s when it did not ask for that cache (the server built its own index within the default 40 s lead)
    and the day took 30 s. A server ready a little after the lead is no failure: the simulated clock runs from
    23:00 the evening before, and the events it missed are replayed at once, within the day. Until 06:00
    (``NIGHT`` of real time after the lead) that is 3 % of the day's arrivals (``DAILY_CURVE``) and the night
    agent's shift starting late (``SHIFTS``: chen from 00:00); later, whole busy hours would be squeezed into a burst."""
    summary = simulate(tmp_path_factory.mktemp("sim"), DAY, conversations=150, speed=8640, keep=True,
                       lead_seconds=LEAD, min_patience_real=PATIENCE)
    if summary["server_ready_seconds"] > LEAD + NIGHT:
        stop_server(summary.pop("server"))  # a failed setup left the server running past the suite
        pytest.fail(f"the server was ready only after the simulated day began: {summary}")
    yield summary
    stop_server(summary.pop("server"))


def show(page, first: str, last: str, channel: str = "") -> None:
    page.fill("#dash-from", first)
    page.fill("#dash-to", last)
    page.select_option("#dash-channel", channel)
    page.click("#dash-apply")
    query = f"from={first}&to={last}" + (f"&channel={channel}" if channel else "")
    page.wait_for_function("q => document.getElementById('section-dashboard').getAttribute('data-loaded') === q",
                           arg=query)


def kpi(page, name: str) -> str:
    return page.locator(f"#kpi-{name} .kpi-value").inner_text()


def chart_total(page, name: str) -> float:
    """The sum of every dataset drawn in a chart (0 when nothing was drawn)."""
    return page.evaluate("""id => { const c = Chart.getChart(document.getElementById('chart-' + id));
        if (!c) return -1; return c.data.datasets.reduce((s, d) => s + d.data.reduce((a, v) => a + (v || 0), 0), 0); }""",
                         name)


def watch(page, errors: list[str]) -> None:
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    # the only refusals expected: "who am I" before logging in, and the browser's favicon probe
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and not (
        r.url.endswith("/agents/api/session") or r.url.endswith("/favicon.ico")) else None)


def logged_in(browser, url: str):
    """A new browser context with the supervisor logged in to the console: (context, page, errors seen)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    watch(page, errors)
    page.goto(url + "/agents/")
    page.fill("#username", SUPERVISOR)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    return context, page, errors


def test_dashboard_over_a_simulated_day(simulated, browser):
    # Claims need agents' HTTP round trips before the citizen gives up: 3 on a loaded slow machine, once 0 in CI
    # (STATS had no "claims" key) before PATIENCE; the charts below compare the page with the API.
    assert simulated["messages"] > 100 and simulated["handoffs"] > 5 and simulated.get("claims", 0) > 0
    assert simulated.get("errors", 0) <= 2, simulated.get("last_error")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page, errors = logged_in(browser, simulated["url"])
    page.click("#tab-section-dashboard")
    page.wait_for_selector("#dash-kpis .kpi")
    show(page, DAY.isoformat(), DAY.isoformat())

    api = httpx.Client(base_url=simulated["url"])
    api.post("/agents/api/login", json={"username": SUPERVISOR, "password": PASSWORD}).raise_for_status()
    data = api.get(f"/agents/api/dashboard?from={DAY}&to={DAY}").json()
    assert kpi(page, "conversations") == str(data["outcomes"]["conversations"]) != "0"
    assert kpi(page, "handoffs") == str(data["handoffs"]["total"])
    # every chart drew the day's numbers
    assert chart_total(page, "volume") == data["volume"]["messages"] > 0
    assert chart_total(page, "reasons") == data["handoffs"]["total"] > 0
    assert chart_total(page, "waits") == data["handoffs"]["claimed"]
    assert chart_total(page, "deflection") > 0 and chart_total(page, "staffing") > 0 and chart_total(page, "forecast") > 0
    # the canvases are painted, not blank
    for name in ("volume", "deflection", "reasons", "waits", "staffing", "forecast"):
        box = page.locator(f"#chart-{name}").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150, name
    assert page.locator("#table-top_entries tbody tr").count() > 0
    # every table fits its card: no number column cut off behind a horizontal scroll (👎 was)
    cut = page.evaluate("""() => [...document.querySelectorAll('.dash-table')]
        .filter(t => t.scrollWidth > t.clientWidth + 1).map(t => t.id || t.querySelector('table').id)""")
    assert cut == [], cut
    page.set_viewport_size({"width": 1280, "height": 3000})  # the section scrolls itself: show all of it
    page.screenshot(path=str(ARTIFACTS / "dashboard-day.png"))
    page.set_viewport_size({"width": 1280, "height": 900})

    # the date filter changes the numbers: the day before had no citizens, the two days together the same
    show(page, (DAY - dt.timedelta(days=1)).isoformat(), (DAY - dt.timedelta(days=1)).isoformat())
    assert kpi(page, "conversations") == "0" and chart_total(page, "volume") == 0
    page.screenshot(path=str(ARTIFACTS / "dashboard-empty-day.png"), full_page=False)
    show(page, DAY.isoformat(), DAY.isoformat(), channel="web")
    web = int(kpi(page, "conversations"))
    assert 0 < web < data["outcomes"]["conversations"]
    # more than two weeks: a bar per day, and staffing as the mean per hour of day
    show(page, (DAY - dt.timedelta(days=19)).isoformat(), DAY.isoformat())
    labels = page.evaluate("""id => Chart.getChart(document.getElementById('chart-' + id)).data.labels""", "volume")
    assert len(labels) == 20 and chart_total(page, "volume") == data["volume"]["messages"]
    staffing_labels = page.evaluate("""id => Chart.getChart(document.getElementById('chart-' + id)).data.labels""",
                                    "staffing")
    assert len(staffing_labels) == 24 and staffing_labels[0].startswith("⌀")
    # the category filter lists the KB's categories
    categories = page.locator("#dash-category option").all_inner_texts()
    assert "testing" in categories and "health_code" in categories

    # CSV downloads: the link carries the current range and filter
    show(page, DAY.isoformat(), DAY.isoformat())
    with page.expect_download() as info:
        page.click("a.csv[data-table=top_entries]")
    download = info.value
    assert download.suggested_filename == f"hotline-top_entries-{DAY}-{DAY}.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["entry_id", "answered", "thumbs_up", "thumbs_down"]
    assert [r[0] for r in rows[1:]] == [e["entry_id"] for e in data["answers"]["top_entries"]]
    with page.expect_download() as info:
        page.click("a.csv[data-table=staffing]")
    staffing = list(csv.reader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8-sig"))))
    assert len(staffing) == 25 and staffing[0][:3] == ["hour", "handoff_arrivals", "recommended_agents"]
    page.locator("#dash-kpis").screenshot(path=str(ARTIFACTS / "dashboard-kpis.png"))
    assert not errors, errors
    context.close()


def test_an_older_answer_arriving_late_does_not_overwrite_the_range_just_applied(simulated, browser):
    """The section's opening load (the default range) is held back until the supervisor's own range has been
    applied and drawn, then answered: the page keeps the supervisor's range. Before, the late answer was drawn
    over it. Found while chasing a timeout of the test above on a loaded machine (whose cause was the session's
    expiry, last test below): a slow opening load can answer after the supervisor's first filter."""
    context, page, errors = logged_in(browser, simulated["url"])
    page.wait_for_selector("#tab-section-dashboard")
    held: list = []
    hold_first(page, "**/agents/api/dashboard?*", held, when=lambda url: "from=" not in url)  # the opening load
    with page.expect_request(lambda r: "/agents/api/dashboard?" in r.url):
        page.click("#tab-section-dashboard")
    page.wait_for_selector("#dash-apply")
    show(page, DAY.isoformat(), DAY.isoformat())
    applied = kpi(page, "conversations")
    assert applied != "0" and held, held
    release(page, held)
    loaded = page.locator("#section-dashboard").get_attribute("data-loaded")
    assert loaded == f"from={DAY}&to={DAY}" and kpi(page, "conversations") == applied
    assert page.input_value("#dash-from") == DAY.isoformat()
    assert not errors, errors
    context.close()


def test_a_login_outlasts_a_look_at_the_dashboard(simulated):
    """Staff sessions expire on the server's simulated clock: at 48 h they lasted 20 real seconds at 8,640x,
    and on a loaded machine the supervisor was logged out in the middle of the browser test above (the staffing
    CSV download canceled: its answer was a 401; the second tab meant to avoid it met the login form). A login
    now lasts the replayed day and 30 simulated days more: minutes of real time."""
    import sqlite3

    api = httpx.Client(base_url=simulated["url"])
    api.post("/agents/api/login", json={"username": SUPERVISOR, "password": PASSWORD}).raise_for_status()
    with sqlite3.connect(Path(simulated["data_dir"]) / "hotline.db") as db:
        created, expires = db.execute(
            "SELECT created_at, expires_at FROM staff_sessions ORDER BY created_at DESC LIMIT 1").fetchone()
    lifetime = dt.datetime.fromisoformat(expires) - dt.datetime.fromisoformat(created)
    assert lifetime.total_seconds() / simulated["speed"] >= 240, lifetime  # real seconds at the replay's speed
    assert api.get("/agents/api/session").status_code == 200
