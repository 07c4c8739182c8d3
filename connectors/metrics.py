"""``GET /metrics``: operator metrics in the Prometheus text format (prometheus-client).

Two kinds of numbers:

- *events*, counted where they happen: request latency per route (histogram), citizen messages
  by channel and outcome (counter). The production server runs several worker processes, so
  these use prometheus-client's multi-process mode: every worker writes its samples to files in
  ``PROMETHEUS_MULTIPROC_DIR`` (set by ``prepare_multiprocess`` in the master before the workers
  fork: ``<data_dir>/metrics/<port>``, emptied at start) and a scrape, whichever worker answers
  it, adds up all of them.
- *state*, read from the database at scrape time (so every worker reports the same): tickets
  waiting / with an agent, agents on duty, outbox backlog per consumer and status (webhooks,
  WeChat), open and overdue callbacks, the KB version. A few indexed ``COUNT`` queries per scrape.

prometheus_client decides at import time whether it runs multi-process, so nothing here imports
it at module level: ``prepare_multiprocess`` must run before the first metric exists.

When ``HOTLINE_API_TOKEN`` is set, scrapes must send it as a bearer token; otherwise the endpoint
is open and should be reachable only from the monitoring network (see README).
"""
from __future__ import annotations

import hmac
import os
import shutil
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import func, select

from bot.models import CallbackTicket, Handoff, OutboxDelivery
from bot.services import Services
from connectors.errors import ApiError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_METRICS: dict[str, Any] = {}


def prepare_multiprocess(data_dir: Path, port: int) -> Path:
    """In the server's master, before any worker forks and before prometheus_client is imported:
    a fresh directory for this server's sample files (unless the operator set one)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given)
    path = Path(data_dir) / "metrics" / str(port)
    shutil.rmtree(path, ignore_errors=True)  # samples of an earlier run would be added in
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def worker_exited(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _metrics() -> dict[str, Any]:
    if not _METRICS:
        from prometheus_client import Counter, Gauge, Histogram

        _METRICS["latency"] = Histogram("hotline_http_request_duration_seconds",
                                        "HTTP request latency by route (Flask rule), method and status class",
                                        ["route", "method", "status"], buckets=LATENCY_BUCKETS)
        _METRICS["messages"] = Counter("hotline_messages_total",
                                       "Citizen messages the bot handled, by channel and outcome (what the bot did)",
                                       ["channel", "outcome"])
        _METRICS["parked"] = Gauge("hotline_long_polls_parked",
                                   "Long polls waiting on the server right now, by kind (console, widget, other)",
                                   ["kind"], multiprocess_mode="livesum")
    return _METRICS


def poll_kind(path: str) -> str:
    return "console" if path.startswith("/agents/") else "widget" if path.startswith("/web/") else "other"


def parked_polls(kind: str) -> Any:
    """The gauge child of one kind of long poll (inc while parked, dec when answered or abandoned)."""
    return _metrics()["parked"].labels(kind=kind)


def count_message(channel: str, reply) -> None:
    """One citizen message handled: outcome = the bot's action (answer, did_you_mean, rephrase,
    not_covered, handoff, handoff_wait, smalltalk, menu, ...), or ``replayed`` for a retry."""
    outcome = "replayed" if getattr(reply, "replayed", False) else (getattr(reply, "action", None) or "other")
    _metrics()["messages"].labels(channel=channel, outcome=outcome).inc()


class StateCollector:
    """Gauges read from the database when scraped."""

    def __init__(self, services: Services):
        self.services = services

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        svc = self.services
        h = Handoff.__table__.c
        with svc.db.read() as session:
            open_tickets = session.execute(select(h.priority, h.claimed_by.is_(None), func.count())
                                           .where(h.closed_at.is_(None))
                                           .group_by(h.priority, h.claimed_by.is_(None))).all()
            backlog = session.execute(select(OutboxDelivery.consumer, OutboxDelivery.status, func.count())
                                      .where(OutboxDelivery.status.in_(("pending", "sending", "held", "dead")))
                                      .group_by(OutboxDelivery.consumer, OutboxDelivery.status)).all()
            oldest = session.execute(select(func.min(OutboxDelivery.created_at)).where(
                OutboxDelivery.status.in_(("pending", "sending")))).scalar()
            now = svc.clock()
            callbacks = session.execute(select(func.count()).select_from(CallbackTicket)
                                        .where(CallbackTicket.status == "open")).scalar() or 0
            overdue = session.execute(select(func.count()).select_from(CallbackTicket).where(
                CallbackTicket.status == "open", CallbackTicket.due_at < now)).scalar() or 0
        queue = GaugeMetricFamily("hotline_queue_waiting", "Handoff tickets waiting for an agent, by priority "
                                  "(0 urgent, 1 normal)", labels=["priority"])
        waiting = {0: 0, 1: 0}
        claimed = 0
        for priority, unclaimed, count in open_tickets:
            if unclaimed:
                waiting[int(priority)] = waiting.get(int(priority), 0) + count
            else:
                claimed += count
        for priority, count in sorted(waiting.items()):
            queue.add_metric([str(priority)], count)
        yield queue
        yield GaugeMetricFamily("hotline_handoffs_with_agent", "Open tickets an agent has claimed", value=claimed)
        yield GaugeMetricFamily("hotline_agents_on_duty", "Agents on duty (switched on and seen recently)",
                                value=svc.desk.agents_on_duty())
        outbox = GaugeMetricFamily("hotline_outbox_backlog", "Outbox deliveries not done, by consumer "
                                   "(webhook, wechat) and status", labels=["consumer", "status"])
        for consumer in sorted({*svc.outbox.consumers, *(c for c, _, _ in backlog)}):
            for status in ("pending", "sending", "held", "dead"):
                outbox.add_metric([consumer, status], next((n for c, s, n in backlog if c == consumer and s == status), 0))
        yield outbox
        yield GaugeMetricFamily("hotline_outbox_oldest_pending_seconds", "Age of the oldest pending delivery",
                                value=(now - oldest).total_seconds() if oldest else 0.0)
        yield GaugeMetricFamily("hotline_callbacks_open", "Callback requests not yet handled", value=callbacks)
        yield GaugeMetricFamily("hotline_callbacks_overdue", "Open callback requests past their due time",
                                value=overdue)
        kb = svc.bot.kb
        yield InfoMetricFamily("hotline_kb", "The knowledge base this process answers from",
                               value={"version": str(kb.version), "entries": str(len(kb.entries))})


def init_metrics(app: Flask, services: Services) -> None:
    metrics = _metrics()
    latency = metrics["latency"]

    @app.before_request
    def _start_timer():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("metrics_started", None)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            latency.labels(route=rule, method=request.method, status=f"{response.status_code // 100}xx").observe(
                time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics_endpoint():
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

        token = services.settings.api_token
        if token:
            given = request.headers.get("Authorization", "")
            if not (given.startswith("Bearer ") and
                    hmac.compare_digest(given.removeprefix("Bearer ").strip().encode(), token.encode())):
                raise ApiError(401, "metrics: send 'Authorization: Bearer <HOTLINE_API_TOKEN>'")
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = CollectorRegistry()
            registry.register(_Forward(REGISTRY))
        registry.register(StateCollector(services))
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


class _Forward:
    """The process's own registry (single-process mode: tests, ``flask run``) inside a scrape registry."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


__all__ = ["count_message", "init_metrics", "prepare_multiprocess", "worker_exited"]
