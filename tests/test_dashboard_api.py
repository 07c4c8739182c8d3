"""The dashboard's HTTP side: who may see it, the date range and filters, the CSV exports."""
from __future__ import annotations

import csv
import io

import pytest

from tests.test_analytics import Builder, bot, build_day, user

PASSWORD = "correct horse 1"


@pytest.fixture()
def staffed(services, clock):
    for name, role in (("alice", "agent"), ("sam", "supervisor"), ("ada", "admin"), ("erin", "editor")):
        services.staff.create(name, PASSWORD, name.title(), role)
    build_day(services.db)
    clock.now = clock.now.replace(day=1, hour=15)  # 23:00 in Shanghai on 2026-12-01
    return services


def login(app, username):
    client = app.test_client()
    response = client.post("/agents/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.json
    client.environ_base["HTTP_X_CSRF_TOKEN"] = response.json["csrf_token"]
    return client


def test_only_supervisors_and_admins_see_it(staffed, app):
    assert app.test_client().get("/agents/api/dashboard").status_code == 401
    assert login(app, "alice").get("/agents/api/dashboard").status_code == 403
    assert login(app, "erin").get("/agents/api/dashboard").status_code == 403
    assert login(app, "sam").get("/agents/api/dashboard").status_code == 200
    assert login(app, "ada").get("/agents/api/dashboard/export/agents.csv").status_code == 200
    assert "dashboard" in login(app, "sam").get("/agents/api/session").json["agent"]["rights"]


def test_range_and_filters_change_the_numbers(staffed, app):
    client = login(app, "sam")
    day = client.get("/agents/api/dashboard?from=2026-12-01&to=2026-12-01").json
    assert day["range"]["from"] == "2026-12-01" and day["range"]["timezone"] == "Asia/Shanghai"
    assert day["outcomes"]["conversations"] == 8 and day["outcomes"]["deflected"] == 4
    assert day["handoffs"]["by_reason"]["emergency"] == 1
    assert day["forecast"]["day"] == "2026-12-02"
    assert "testing" in day["choices"]["categories"]
    week = client.get("/agents/api/dashboard").json  # default: the 7 days up to today (the clock's)
    assert week["range"]["from"] == "2026-11-25" and week["range"]["to"] == "2026-12-01"
    assert week["outcomes"]["conversations"] == 9  # c0 of the day before too
    other = client.get("/agents/api/dashboard?from=2026-11-30&to=2026-11-30").json
    assert other["outcomes"]["conversations"] == 1
    wechat = client.get("/agents/api/dashboard?from=2026-12-01&to=2026-12-01&channel=wechat").json
    assert wechat["outcomes"]["conversations"] == 2 and wechat["filters"] == {"channel": "wechat"}


@pytest.mark.parametrize("query, field", [
    ("from=2026-13-01", "from"), ("to=yesterday", "to"), ("from=2026-12-02&to=2026-12-01", "from"),
    ("from=2026-01-01&to=2026-12-01", "from"), ("channel=" + "x" * 65, "channel"), ("region=a%00b", "region"),
    # a week before 0001-01-02 and a day after 9999-12-31 overflowed: 500s
    ("from=0001-01-01&to=0001-01-02", "to"), ("from=9999-12-30&to=9999-12-31", "to"),
])
def test_bad_input_is_a_400_naming_the_field(staffed, app, query, field):
    client = login(app, "sam")
    response = client.get("/agents/api/dashboard?" + query)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert client.get("/agents/api/dashboard/export/agents.csv?" + query).status_code == 400


def test_every_table_exports_as_csv(staffed, app):
    client = login(app, "sam")
    from connectors.agents.dashboard import TABLES

    for table in TABLES:
        response = client.get(f"/agents/api/dashboard/export/{table}.csv?from=2026-12-01&to=2026-12-01")
        assert response.status_code == 200, table
        assert response.mimetype == "text/csv"
        assert f"hotline-{table}-2026-12-01-2026-12-01.csv" in response.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
        assert rows and all(len(r) == len(rows[0]) for r in rows), table
    top = client.get("/agents/api/dashboard/export/top_entries.csv?from=2026-12-01&to=2026-12-01")
    rows = list(csv.reader(io.StringIO(top.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows == [["entry_id", "answered", "thumbs_up", "thumbs_down"], ["testing.cost", "2", "0", "0"],
                    ["testing.where", "2", "1", "1"]]
    assert client.get("/agents/api/dashboard/export/secrets.csv").status_code == 404


def test_a_question_that_looks_like_a_formula_stays_text(staffed, app):
    Builder(staffed.db).conversation("evil", staffed.clock().replace(hour=14), user(0, "=HYPERLINK(\"x\")"),
                                     bot(0, "not_covered"))
    client = login(app, "sam")
    body = client.get("/agents/api/dashboard/export/unanswered.csv?from=2026-12-01&to=2026-12-01").get_data(as_text=True)
    assert "'=HYPERLINK" in body and "\n=HYPERLINK" not in body
