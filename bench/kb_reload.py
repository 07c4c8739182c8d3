"""Publish → served by every server, under load (issue 9).

    python -m bench.kb_reload                                  # 2 servers x 1 worker on one SQLite file
    python -m bench.kb_reload --postgres postgresql://postgres@127.0.0.1:5432/postgres \\
                              --redis redis://127.0.0.1:6379/11       # 2 servers on PostgreSQL + Redis

Real ``hotline-bot serve`` processes with ``HOTLINE_KB__EDITING=1`` share one database (and the
data dir: models and index artifacts). One load thread per server asks the same question without
pause. Each round an editor changes the answer (a unique marker) and publishes over HTTP on the
first server; the bench records when each server first answers with the marker and checks that
no request failed and no server ever answered with the old text after the new one (a mixed or
flipped version). ``--paraphrase-rounds`` adds rounds that add a question paraphrase: such a publish is
served at once over the previous models (a provisional index) and retrained in the background, so
those rounds also record when each server first answers the new paraphrase itself directly with the
entry (a question that is word for word a KB paraphrase is answered with its entry, also by the
provisional index) and when each server's ``/healthz`` no longer says ``retraining`` (the retrained
models in place: near wordings of the new paraphrase are then learned too). With ``--redis`` the other
servers' own version check is set to once an hour, so only the Redis bump can move them. Traffic goes to 127.0.0.1 only; everything is bounded in time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from bench.live import LOAD_GENERATOR_ENV, start_server, stop_server
from bench.pg import create_database, drop_database
from bot.config import PROJECT_ROOT, Settings

QUESTION = "核酸检测多少钱"
ENTRY = "testing.pcr_fee"
PASSWORD = "bench-editor-pw-1"
# Paraphrases a paraphrase round adds, one per round: far enough from each other and from the KB that
# none is answered directly before its round (each round's result says so: paraphrase_answered_before).
NEW_QUESTIONS = ["捅嗓子那个检测一回得交多少费用", "喉咙里掏一下那个东西一趟花销多大", "鼻咽拭子这一套一共要掏多少银子",
                 "去医院那个棉签戳一下要自己出钱不", "查一次那个病毒要破费多少"]


class Load:
    """One thread per server asking ``question``; records (time, status, marker seen)."""

    def __init__(self, servers, question: str = QUESTION):
        self.question = question
        self.rows: dict[int, list[tuple[float, int, str]]] = {i: [] for i in range(len(servers))}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i, s), daemon=True) for i, s in enumerate(servers)]

    def _run(self, i, server):
        with httpx.Client(base_url=server.url, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    r = client.post("/api/v1/messages", json={"user_id": f"load-{i}-{n}", "text": self.question,
                                                              "new_conversation": True})
                    text = " ".join(m["text"] for m in r.json()["replies"]) if r.status_code == 200 else ""
                    self.rows[i].append((time.perf_counter(), r.status_code, text))
                except httpx.HTTPError as exc:
                    self.rows[i].append((time.perf_counter(), 0, repr(exc)))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _editor(server) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=300)
    r = client.post("/agents/api/login", json={"username": "bench-editor", "password": PASSWORD})
    r.raise_for_status()
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def _answers_directly(client: httpx.Client, text: str, entry: str) -> bool:
    try:
        r = client.post("/api/v1/messages", json={"user_id": f"probe-{uuid.uuid4().hex[:8]}", "text": text,
                                                  "new_conversation": True})
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.json().get("entry_id") == entry


def _retraining(client: httpx.Client) -> bool:
    try:
        return bool(client.get("/healthz").json().get("retraining", True))
    except (httpx.HTTPError, ValueError):
        return True


def _round(editor, load: Load, marker: str, paraphrase: bool, timeout: float, probes: list[httpx.Client],
           entry_id: str = ENTRY) -> dict:
    entry = editor.get(f"/agents/api/kb/entries/{entry_id}").json()
    content = dict(entry["draft"] or entry["published"])
    content["answer"] = {**content["answer"], "zh": f"{marker} 检测费用以当地医保局最新公告为准。"}
    # a question the bot does not answer directly before it is added (checked: answered_before)
    new_question = NEW_QUESTIONS[int(marker.split("版")[0].removeprefix("【第")) % len(NEW_QUESTIONS)]
    if paraphrase:
        content["questions"] = {**content["questions"], "zh": [*content["questions"]["zh"], new_question]}
    editor.post(f"/agents/api/kb/entries/{entry_id}", json={"entry": content}).raise_for_status()
    answered_before = paraphrase and _answers_directly(probes[0], new_question, entry_id)  # must be False to mean anything
    marks = {i: len(rows) for i, rows in load.rows.items()}
    started = time.perf_counter()
    response = editor.post("/agents/api/kb/publish", json={"note": marker})
    response.raise_for_status()
    returned = time.perf_counter()
    seen: dict[int, float] = {}
    answered: dict[int, float] = {}
    retrained: dict[int, float] = {}
    while time.perf_counter() < returned + timeout and (len(seen) < len(load.rows) or (
            paraphrase and (len(answered) < len(probes) or len(retrained) < len(probes)))):
        for i, rows in load.rows.items():
            if i not in seen:
                hit = next((at for at, _, text in rows[marks[i]:] if marker in text), None)
                if hit is not None:
                    seen[i] = hit - started
        for i, probe in enumerate(probes if paraphrase else []):
            if i not in answered and _answers_directly(probe, new_question, entry_id):
                answered[i] = time.perf_counter() - started
            if i in seen and i not in retrained and not _retraining(probe):
                retrained[i] = time.perf_counter() - started
        time.sleep(0.02)
    time.sleep(0.5)
    failed, flipped = 0, 0
    for i, rows in load.rows.items():
        after = rows[marks[i]:]
        failed += sum(1 for _, status, _ in after if status != 200)
        flags = [marker in text for _, status, text in after if status == 200]
        if True in flags:
            first = flags.index(True)
            flipped += sum(1 for f in flags[first:] if not f)
    return {"kind": "paraphrase (retrain)" if paraphrase else "answer edit", "publish_request_s": round(returned - started, 2),
            "served_by_server_s": {str(i): round(v, 2) for i, v in sorted(seen.items())},
            "served_by_all_s": round(max(seen.values()), 2) if len(seen) == len(load.rows) else None,
            **({"paraphrase_answered_by_all_s": round(max(answered.values()), 2) if len(answered) == len(probes)
                else None, "paraphrase_answered_before": answered_before,
                "retrained_by_all_s": round(max(retrained.values()), 2) if len(retrained) == len(probes) else None}
               if paraphrase else {}),
            "requests": sum(len(rows[marks[i]:]) for i, rows in load.rows.items()), "failed": failed,
            "went_back_to_old": flipped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(PROJECT_ROOT / "var"), help="models + index artifacts (reused)")
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument("--postgres", help="admin URL; a throw-away database is created and dropped")
    parser.add_argument("--redis", help="redis URL (pub/sub bump); use a db number of your own")
    parser.add_argument("--rounds", type=int, default=3, help="answer-edit rounds")
    parser.add_argument("--paraphrase-rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--knowledge-dir", help="another KB (e.g. bench.bigkb's, with --data-dir where its index is)")
    parser.add_argument("--entry", default=ENTRY, help="the entry edited; the load asks its first zh question")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="kb-reload-"))
    admin_url = Settings(database_url=args.postgres).sqlalchemy_url if args.postgres else ""
    url = create_database(admin_url) if args.postgres else f"sqlite:///{tmp / 'bench.db'}"
    env = {"HOTLINE_DATABASE_URL": url, "HOTLINE_KB__EDITING": "1", "HOTLINE_SERVER__WORKERS": str(args.workers),
           **LOAD_GENERATOR_ENV}
    if args.knowledge_dir:
        env["HOTLINE_KNOWLEDGE_DIR"] = str(Path(args.knowledge_dir).resolve())
    if args.redis:
        env["HOTLINE_REDIS_URL"] = args.redis
    servers = []
    results = []
    try:
        data_dir = Path(args.data_dir)
        servers.append(start_server(data_dir, env, timeout=600))
        for _ in range(args.servers - 1):
            servers.append(start_server(data_dir, {**env, **({"HOTLINE_KB__CHECK_INTERVAL": "3600"}
                                                             if args.redis else {})}, timeout=600))
        subprocess.run([sys.executable, "-m", "connectors.cli", "agent", "create", "bench-editor", "--role", "editor",
                        "--password", PASSWORD], env={**os.environ, **servers[0].env}, cwd=PROJECT_ROOT, check=True,
                       capture_output=True, timeout=120)
        editor = _editor(servers[0])
        probes = [httpx.Client(base_url=s.url, timeout=60) for s in servers]
        question = QUESTION if args.entry == ENTRY else \
            editor.get(f"/agents/api/kb/entries/{args.entry}").json()["published"]["questions"]["zh"][0]
        with Load(servers, question) as load:
            time.sleep(1.0)
            for n in range(args.rounds + args.paraphrase_rounds):
                marker = f"【第{n + 1}版 {uuid.uuid4().hex[:6]}】"
                results.append(_round(editor, load, marker, n >= args.rounds, args.timeout, probes, args.entry))
                print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    finally:
        for server in servers:
            stop_server(server)
        if args.postgres:
            drop_database(admin_url, url)
    summary = {"servers": args.servers, "workers_per_server": args.workers,
               "database": "postgresql" if args.postgres else "sqlite", "redis": bool(args.redis), "rounds": results}
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    ok = all(r["failed"] == 0 and r["went_back_to_old"] == 0 and r["served_by_all_s"] is not None for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
