"""HTTP side of the dashboard: the metrics of ``bot.analytics`` as JSON and every table as CSV.

Supervisors and admins only (right ``dashboard``). Dates are local calendar days in the desk's
time zone (``from``/``to`` inclusive, ``YYYY-MM-DD``); without them, the last 7 days up to today
as the injected clock sees it. Bad input answers 400 naming the parameter.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re

from flask import Blueprint, Response, jsonify, request

from bot.analytics import Analytics, Filters
from connectors.context import services, staff_required
from connectors.errors import ApiError, query_text

MAX_DAYS = 93  # a quarter: the queries scan turns of the range
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

dashboard = Blueprint("dashboard", __name__, url_prefix="/agents/api/dashboard")


def analytics() -> Analytics:
    svc = services()
    desk = svc.settings.desk
    return Analytics(svc.db, timezone=desk.timezone, entries=lambda: list(svc.bot.kb.entries),
                     clock=svc.clock, service_level_target=desk.service_level_target,
                     service_level_seconds=desk.service_level_seconds)


def _date(name: str, default: dt.date) -> dt.date:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not DATE.match(raw):
        raise ApiError(400, f"{name}: must be a date YYYY-MM-DD", name)
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"{name}: not a calendar date", name) from None
    if not 2000 <= day.year <= 9000:  # 0001-01-01 minus a week, 9999-12-31 plus a day: OverflowError, a 500
        raise ApiError(400, f"{name}: a year from 2000 to 9000", name)
    return day


def _query(engine: Analytics) -> tuple[dt.date, dt.date, Filters]:
    today = (engine.clock() + engine.offset(engine.clock())).date()
    last = _date("to", today)
    first = _date("from", last - dt.timedelta(days=6))
    if first > last:
        raise ApiError(400, "from: must not be after 'to'", "from")
    if (last - first).days + 1 > MAX_DAYS:
        raise ApiError(400, f"from: at most {MAX_DAYS} days per query", "from")
    filters = Filters(**{name: query_text(name, 64) for name in ("channel", "language", "category", "region")})
    return first, last, filters


@dashboard.get("")
@staff_required("dashboard")
def report():
    engine = analytics()
    first, last, filters = _query(engine)
    start, end = engine.local_day_range(first, last)
    out = engine.report(start, end, filters)
    out["range"].update({"from": first.isoformat(), "to": last.isoformat()})
    out["forecast"] = engine.forecast(last + dt.timedelta(days=1))
    out["choices"] = {"categories": sorted({e.category for e in services().bot.kb.entries.values()})}
    return jsonify(out)


def _tables(out: dict) -> dict[str, tuple[list[str], list[list]]]:
    """Every table the dashboard shows, as (header, rows)."""
    volume, answers, handoffs = out["volume"], out["answers"], out["handoffs"]
    channels = volume["channels"]
    return {
        "hourly_volume": (["hour"] + [f"conversations_{c}" for c in channels] + [f"messages_{c}" for c in channels],
                          [[h["hour"]] + [h["conversations"].get(c, 0) for c in channels]
                           + [h["messages"].get(c, 0) for c in channels] for h in volume["hourly"]]),
        "deflection": (["day", "conversations", "deflected", "served", "deflection_rate", "served_rate"],
                       [[d["day"], d["conversations"], d["deflected"], d["served"], d["deflection_rate"],
                         d["served_rate"]] for d in out["outcomes"]["trend"]]),
        "top_entries": (["entry_id", "answered", "thumbs_up", "thumbs_down"],
                        [[e["entry_id"], e["count"], e["up"], e["down"]] for e in answers["top_entries"]]),
        "unanswered": (["question", "count", "last_asked"],
                       [[u["text"], u["count"], u["last"]] for u in answers["unanswered"]]),
        "feedback": (["entry_id", "thumbs_up", "thumbs_down"],
                     [[f["entry_id"], f["up"], f["down"]] for f in answers["feedback"]]),
        "never_asked": (["entry_id"], [[e] for e in answers["never_asked"]]),
        "handoff_reasons": (["reason", "handoffs"], [[r, n] for r, n in handoffs["by_reason"].items()]),
        "wait_histogram": (["wait", "handoffs"], [[b["bucket"], b["count"]] for b in handoffs["wait_seconds"]["histogram"]]),
        "agents": (["agent", "duty_hours", "handled", "handled_per_duty_hour"],
                   [[a["agent"], a["duty_hours"], a["handled"], a["per_duty_hour"]] for a in out["agents"]["agents"]]),
        "staffing": (["hour", "handoff_arrivals", "recommended_agents", "on_duty_agents", "expected_service_level"],
                     [[h["hour"], h["arrivals"], h["recommended"], h["on_duty"], h["expected_service_level"]]
                      for h in out["staffing"]["hours"]]),
        "forecast": (["hour", "expected_conversations", "expected_handoffs", "recommended_agents"],
                     [[h["hour"], h["conversations"], h["handoffs"], h["recommended"]] for h in out["forecast"]["hours"]]),
    }


TABLES = ("hourly_volume", "deflection", "top_entries", "unanswered", "feedback", "never_asked", "handoff_reasons",
          "wait_histogram", "agents", "staffing", "forecast")


def _cell(value) -> object:
    """Spreadsheets run cells starting with = + - @ as formulas: a citizen's question must stay text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


@dashboard.get("/export/<table>.csv")
@staff_required("dashboard")
def export(table: str):
    if table not in TABLES:
        raise ApiError(404, f"table: one of {', '.join(TABLES)}", "table")
    engine = analytics()
    first, last, filters = _query(engine)
    start, end = engine.local_day_range(first, last)
    out = engine.report(start, end, filters)
    out["forecast"] = engine.forecast(last + dt.timedelta(days=1))
    header, rows = _tables(out)[table]
    buffer = io.StringIO()
    buffer.write("\ufeff")  # Excel opens UTF-8 (Chinese questions) correctly only with a BOM
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    name = f"hotline-{table}-{first.isoformat()}-{last.isoformat()}.csv"
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
