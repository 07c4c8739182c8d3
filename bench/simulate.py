"""Replay a realistic hotline day into a fresh database through the real HTTP API.

A real ``hotline-bot serve`` runs on a warped clock (``HOTLINE_SIMULATION__*``: one simulated day
in a few real minutes, the same time in every worker), so every row carries the simulated time
the dashboard then shows. Citizens arrive on a daily curve with morning and evening peaks and
ask questions from the project's held-out sets (never indexed): answerable paraphrases,
in-domain questions the KB does not cover, requests for a person, emergencies, small talk.
Web citizens rate some answers (👍/👎) and some leave a callback request; a few who wait too
long give up (they start a new conversation, which closes the old ticket as abandoned).
Agents work shifts: they log in, go on duty, claim waiting tickets, reply and resolve after
exponentially distributed handle times, and go off duty.

    python -m bench.simulate --out var/sim --day 2026-12-01 --conversations 400 --speed 720

prints a summary as JSON and leaves the server's database (SQLite in ``--out``) for the
dashboard; ``--keep`` leaves the server running and prints its URL and a supervisor login.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import heapq
import itertools
import json
import random
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import httpx
import yaml

from bench.heldout import DATA_DIR, load_heldout
from bench.live import LOAD_GENERATOR_ENV, LiveServer, start_server, stop_server

# Share of the day's conversations starting in each local hour: night trough, a morning peak
# (9–11) and an evening peak (19–21), the shape hotlines report.
DAILY_CURVE = [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.5, 6.5, 6.8, 5.5, 4.2, 4.5, 4.8, 4.6, 4.3, 4.6,
               5.5, 6.6, 6.9, 5.2, 3.4, 2.0]
MIX = {"answerable": 0.56, "unanswerable": 0.2, "ask_human": 0.12, "emergency": 0.04, "smalltalk": 0.08}
ASK_HUMAN = {"zh": ["转人工", "我要找人工客服", "人工服务"], "en": ["I want to talk to a person", "human agent please"]}
SMALLTALK = {"zh": ["你好", "谢谢", "好的谢谢"], "en": ["hello", "thanks"]}
# Shifts (local hours, end exclusive): 4 agents, more at the peaks, one covering the night.
SHIFTS = {"li": [(8, 16)], "wang": [(9, 13), (17, 22)], "zhang": [(12, 20)], "chen": [(19, 24), (0, 8)]}
PASSWORD = "simulated day 1"
SUPERVISOR = "supervisor"


@dataclass(order=True)
class Event:
    at: dt.datetime
    seq: int
    action: Callable[[], object] = field(compare=False)


class Day:
    """The simulated clock (same formula as the server's) and the event queue."""

    def __init__(self, start: dt.datetime, anchor: float, speed: float, clock: Callable[[], float] = time.time):
        """``clock``: real seconds (a test freezes it: at 8,640x one real millisecond is 8.6 simulated seconds)."""
        self.start, self.anchor, self.speed, self.clock = start, anchor, speed, clock
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.counter = itertools.count()
        self.late: list[float] = []

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(self.clock() - self.anchor) * self.speed)

    def at(self, when: dt.datetime, action: Callable[[], object]) -> None:
        with self.lock:
            heapq.heappush(self.events, Event(when, next(self.counter), action))

    def after(self, seconds: float, action: Callable[[], object]) -> None:
        self.at(self.now() + dt.timedelta(seconds=seconds), action)

    def run(self, until: dt.datetime, pool: ThreadPoolExecutor) -> None:
        while True:
            with self.lock:
                event = self.events[0] if self.events else None
                if event is None or event.at >= until:
                    return
                wait = (event.at - self.now()).total_seconds() / self.speed
                if wait <= 0:
                    heapq.heappop(self.events)
            if wait > 0:  # short naps: a worker may schedule an earlier event meanwhile
                time.sleep(min(wait, 0.01))
                continue
            self.late.append(-wait)
            pool.submit(_safely, event.action)


def _safely(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:  # one failed request must not end the day; counted and reported
        STATS["errors"] += 1
        LAST_ERROR[:] = [repr(exc)[:300]]


STATS: Counter = Counter()
LAST_ERROR: list[str] = []


def questions(seed: int) -> dict[str, list[tuple[str, str]]]:
    """(text, lang) per kind, from the held-out files (evaluation data: never indexed)."""
    answerable = [(q.text, q.lang) for q in load_heldout() if q.expected]
    unanswerable = [(r["text"], r["lang"]) for r in yaml.safe_load((DATA_DIR / "out_of_kb_test.yml").read_text("utf-8"))]
    emergency_data = yaml.safe_load((DATA_DIR / "emergency_test.yml").read_text("utf-8"))
    emergency = [(r["text"], r["lang"]) for r in emergency_data["emergency"] if r.get("lang") in ("zh", "en")]
    return {"answerable": answerable, "unanswerable": unanswerable, "emergency": emergency}


class Citizens:
    def __init__(self, server: LiveServer, day: Day, rng: random.Random, pool: dict, tickets: "Tickets"):
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.day, self.rng, self.pool, self.tickets = day, rng, pool, tickets
        self.lock = threading.Lock()

    def _pick(self, kind: str) -> tuple[str, str]:
        with self.lock:
            return self.rng.choice(self.pool[kind])

    def _roll(self) -> float:
        with self.lock:
            return self.rng.random()

    def send(self, citizen: dict, text: str, new: bool = False) -> dict:
        if citizen["channel"] == "web":
            body = {"user_id": citizen["id"], "text": text, "conversation_id": citizen.get("conversation_id"),
                    "new_conversation": new, "language": citizen["lang"]}
            response = self.http.post("/web/api/messages", json=body)
            response.raise_for_status()
            data = response.json()
            reply = data["reply"]
            bots = [t["id"] for t in data.get("turns", []) if t.get("role") == "bot"]
            reply["_bot_turn"] = bots[-1] if bots else None
        else:
            response = self.http.post("/api/v1/messages", json={"user_id": citizen["id"], "text": text,
                                                               "conversation_id": citizen.get("conversation_id"),
                                                               "new_conversation": new})
            response.raise_for_status()
            reply = response.json()
        citizen["conversation_id"] = reply["conversation_id"]
        STATS["messages"] += 1
        if reply.get("handoff") and reply["handoff"].get("id"):
            self.tickets.opened(reply["handoff"]["id"], citizen)
        return reply

    def arrive(self) -> None:
        roll, kind, acc = self._roll(), "answerable", 0.0
        for name, share in MIX.items():
            acc += share
            if roll < acc:
                kind = name
                break
        channel = "web" if self._roll() < 0.6 else "api"
        citizen = {"id": ("sim" + secrets.token_hex(10)) if channel == "web" else "sim-" + secrets.token_hex(6),
                   "channel": channel, "kind": kind}
        STATS[f"citizens_{kind}"] += 1
        if kind in ("answerable", "unanswerable", "emergency"):
            text, lang = self._pick(kind)
            citizen["lang"] = "en" if lang == "en" else "zh"  # zh-Hant and mixed are written to the zh side
        else:
            citizen["lang"] = "zh" if self._roll() < 0.8 else "en"
            text = self.rng.choice((ASK_HUMAN if kind == "ask_human" else SMALLTALK)[citizen["lang"]])
        reply = self.send(citizen, text)
        if kind == "answerable":
            if channel == "web" and reply.get("_bot_turn") and self._roll() < 0.35:
                value = "up" if self._roll() < 0.75 else "down"
                self.day.after(20, lambda: self.feedback(citizen, reply["_bot_turn"], value))
            if self._roll() < 0.2:  # a second question a little later
                self.day.after(self.rng.uniform(30, 300), lambda: self.send(citizen, self._pick("answerable")[0]))
        elif kind == "unanswerable" and not reply.get("handoff"):
            if channel == "web" and self._roll() < 0.25:
                self.day.after(40, lambda: self.callback(citizen))
            elif self._roll() < 0.7:  # tries again in other words; a second miss goes to a person
                self.day.after(self.rng.uniform(20, 90), lambda: self.send(citizen, self._pick("unanswerable")[0]))

    def feedback(self, citizen: dict, turn_id: int, value: str) -> None:
        self.http.post("/web/api/feedback", json={"user_id": citizen["id"], "conversation_id": citizen["conversation_id"],
                                                  "turn_id": turn_id, "value": value}).raise_for_status()
        STATS[f"feedback_{value}"] += 1

    def callback(self, citizen: dict) -> None:
        phone = "139" + "".join(str(self.rng.randrange(10)) for _ in range(8))
        self.http.post("/web/api/callbacks", json={"user_id": citizen["id"], "conversation_id": citizen["conversation_id"],
                                                   "phone": phone, "language": citizen["lang"]}).raise_for_status()
        STATS["callbacks"] += 1

    def give_up(self, citizen: dict, handoff_id: int) -> None:
        """Still waiting after their patience ran out: they ask something else in a new conversation."""
        if self.tickets.still_waiting(handoff_id):
            self.send(citizen, self._pick("answerable")[0], new=True)
            self.tickets.closed(handoff_id)
            STATS["gave_up"] += 1


class Tickets:
    """What the simulator itself opened: agents poll the server's queue only while one may wait.

    ``min_patience_real``: no citizen gives up before this many *real* seconds. Compressing time compresses the
    citizens' patience but not the HTTP round trips an agent needs to see and claim a ticket: at 8,640x a mean
    patience of 10 simulated minutes is 69 ms of real time, and in a CI run on a loaded machine every citizen of a
    150-conversation day gave up before any agent's claim arrived (0 claims; the dashboard test needs some).
    0 (the default, and the CLI's) keeps patience purely simulated."""

    def __init__(self, day: Day, rng: random.Random, min_patience_real: float = 0.0):
        self.day, self.rng = day, rng
        self.min_patience = min_patience_real * day.speed
        self.waiting: dict[int, dict] = {}
        self.lock = threading.Lock()
        self.citizens: Citizens | None = None

    def opened(self, handoff_id: int, citizen: dict) -> None:
        with self.lock:
            if handoff_id in self.waiting:
                return
            self.waiting[handoff_id] = citizen
            patience = max(self.rng.expovariate(1 / 600), self.min_patience)  # mean 10 min
        STATS["handoffs"] += 1
        citizens = self.citizens
        assert citizens is not None
        self.day.after(patience, lambda: citizens.give_up(citizen, handoff_id))

    def still_waiting(self, handoff_id: int) -> bool:
        with self.lock:
            return handoff_id in self.waiting

    def closed(self, handoff_id: int) -> None:
        with self.lock:
            self.waiting.pop(handoff_id, None)

    def any(self) -> bool:
        with self.lock:
            return bool(self.waiting)


class Agent:
    POLL_SECONDS = 30.0  # simulated seconds between looks at the queue while idle
    # ... and at least this many real seconds: at 8,640x a 30 s look is 3.5 ms of real time, and while a ticket
    # waited four agents asked the server ~1,100 times a second; on a loaded machine the simulator's own polling
    # then made every wait long (dashboard test: wait p50 9,244 simulated s, 0 % claimed within 60 s)
    MIN_POLL_REAL = 0.05

    def __init__(self, name: str, server: LiveServer, day: Day, tickets: Tickets, rng: random.Random,
                 mean_handle: float):
        self.name, self.server, self.day, self.tickets, self.rng = name, server, day, tickets, rng
        self.mean_handle = mean_handle
        self.http = httpx.Client(base_url=server.url, timeout=60)  # a fresh one (new session) per shift
        self.on_shift = False
        self.busy = False

    def _post(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.http.post("/agents/api" + path, json=body or {})

    def start_shift(self, until: dt.datetime) -> None:
        self.http = httpx.Client(base_url=self.server.url, timeout=60)
        login = self.http.post("/agents/api/login", json={"username": self.name, "password": PASSWORD})
        login.raise_for_status()
        self.http.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        self._post("/duty", {"on_duty": True}).raise_for_status()
        self.on_shift = True
        self.until = until
        STATS["shifts"] += 1
        self.day.after(0, self.tick)
        self.day.after(600, self.heartbeat)

    def heartbeat(self) -> None:
        if self.on_shift:
            self._post("/duty", {"on_duty": True})
            self.day.after(600, self.heartbeat)

    def end_shift(self) -> None:
        self.on_shift = False
        if not self.busy:
            self._post("/duty", {"on_duty": False})

    def tick(self) -> None:
        if not self.on_shift or self.busy:
            return
        if self.tickets.any():
            waiting = self.http.get("/api/v1/handoffs", params={"status": "waiting", "limit": 5})
            for ticket in waiting.json().get("handoffs", []) if waiting.status_code == 200 else []:
                claimed = self._post(f"/handoffs/{ticket['id']}/claim")
                if claimed.status_code == 200:
                    self.tickets.closed(ticket["id"])
                    self.busy = True
                    STATS["claims"] += 1
                    handle = max(45.0, self.rng.expovariate(1 / self.mean_handle))
                    handoff_id = int(ticket["id"])
                    self.day.after(min(30.0, handle / 3), lambda: self._post(
                        f"/handoffs/{handoff_id}/reply", {"text": "您好，我是人工客服，请问有什么可以帮您？"}))
                    self.day.after(handle, lambda: self.finish(handoff_id))
                    return
        self.day.after(max(self.POLL_SECONDS, self.MIN_POLL_REAL * self.day.speed), self.tick)

    def finish(self, handoff_id: int) -> None:
        self._post(f"/handoffs/{handoff_id}/resolve")
        STATS["resolved"] += 1
        self.busy = False
        if self.on_shift:
            self.day.after(5, self.tick)
        else:
            self._post("/duty", {"on_duty": False})


def create_accounts(data_dir: Path) -> None:
    """Accounts are setup, not traffic: written through the staff directory before the server starts."""
    from bot.config import Settings
    from bot.conversations.staff import StaffDirectory
    from bot.db import Database

    settings = Settings(data_dir=data_dir, database_url=None)
    db = Database(settings.sqlalchemy_url)
    db.upgrade()
    staff = StaffDirectory(db)
    for name in SHIFTS:
        staff.create(name, PASSWORD, name.title(), "agent")
    staff.create(SUPERVISOR, PASSWORD, "Supervisor", "supervisor")
    db.dispose()


def simulate(out: Path, day: dt.date, conversations: int, speed: float, seed: int = 1, timezone: str = "Asia/Shanghai",
             mean_handle: float = 240.0, lead_seconds: float = 40.0, keep: bool = False, days: int = 1,
             min_patience_real: float = 0.0) -> dict[str, Any]:
    """Replays ``days`` days from ``day`` (weekends at 70 % of the weekday volume). Returns a
    summary; the server's database stays in ``out``. ``min_patience_real``: see ``Tickets``."""
    rng = random.Random(seed)
    zone = ZoneInfo(timezone)
    day_start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.timezone.utc).replace(tzinfo=None)
    day_end = day_start + dt.timedelta(days=days)
    out.mkdir(parents=True, exist_ok=True)
    create_accounts(out)
    # The simulated day begins ``lead_seconds`` of real time from now (the server's startup), at
    # 23:00 the evening before; the simulator waits for its events' times on the same clock.
    sim_start = day_start - dt.timedelta(hours=1)
    anchor = time.time() + lead_seconds
    # Staff sessions expire on the server's (simulated) clock: 48 h was 20 real seconds at 8,640x, and a
    # supervisor looking at the dashboard after the day was logged out mid-look (the browser test, on a loaded
    # machine). They last the replayed days and 30 more (at 8,640x: 5 real minutes after the replay).
    session_hours = 24 * (days + 30)
    env = {"HOTLINE_SIMULATION__START": sim_start.isoformat(), "HOTLINE_SIMULATION__ANCHOR": f"{anchor:.3f}",
           "HOTLINE_SIMULATION__SPEED": str(speed), **LOAD_GENERATOR_ENV,
           "HOTLINE_DESK__PRESENCE_SECONDS": "1800", "HOTLINE_DESK__TIMEZONE": timezone,
           "HOTLINE_SESSION_HOURS": str(session_hours)}
    started = time.perf_counter()
    server = start_server(out, env)
    ready_after = time.perf_counter() - started
    clock = Day(sim_start, anchor, speed)
    tickets = Tickets(clock, rng, min_patience_real)
    citizens = Citizens(server, clock, rng, questions(seed), tickets)
    tickets.citizens = citizens
    # arrivals: a Poisson process per hour, the day's total split by the curve
    total = sum(DAILY_CURVE)
    agents = {name: Agent(name, server, clock, tickets, rng, mean_handle) for name in SHIFTS}
    for n in range(days):
        midnight = day_start + dt.timedelta(days=n)
        volume = conversations * (0.7 if (day + dt.timedelta(days=n)).weekday() >= 5 else 1.0)
        for hour, weight in enumerate(DAILY_CURVE):
            for _ in range(_poisson(rng, volume * weight / total)):
                clock.at(midnight + dt.timedelta(hours=hour, seconds=rng.uniform(0, 3600)), citizens.arrive)
        for name, shifts in SHIFTS.items():
            for begin, end in shifts:
                until = midnight + dt.timedelta(hours=end)
                clock.at(midnight + dt.timedelta(hours=begin), functools.partial(agents[name].start_shift, until))
                clock.at(until - dt.timedelta(seconds=1), agents[name].end_shift)
    real_start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        clock.run(day_end, pool)
    real = time.perf_counter() - real_start
    late = sorted(clock.late)
    summary = {"day": day.isoformat(), "days": days, "timezone": timezone, "speed": speed, "server_ready_seconds": round(ready_after, 1),
               "real_seconds": round(real, 1), "url": server.url, "data_dir": str(out),
               "late_events": len(late), "late_p90_real_seconds": round(late[int(0.9 * (len(late) - 1))], 3) if late else 0,
               "supervisor": {"username": SUPERVISOR, "password": PASSWORD}, **dict(STATS),
               **({"last_error": LAST_ERROR[0]} if LAST_ERROR else {})}
    if not keep:
        stop_server(server)
    else:
        summary["pid"] = server.pid
        summary["server"] = server  # the caller stops it (bench.live.stop_server)
    return summary


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method (``random`` has no Poisson sampler); means here are < 60."""
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/sim"), help="data dir of the simulated server (fresh)")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2026, 12, 1))
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--speed", type=float, default=720.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=1, help="consecutive days to replay")
    parser.add_argument("--keep", action="store_true", help="leave the server running")
    args = parser.parse_args(argv)
    summary = simulate(args.out, args.day, args.conversations, args.speed, args.seed, keep=args.keep, days=args.days)
    summary.pop("server", None)
    print(json.dumps(summary, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
