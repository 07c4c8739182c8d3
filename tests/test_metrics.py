"""GET /metrics, read back with prometheus-client's own text parser: in process, and across the
worker processes of a real server (multi-process mode adds every worker's samples up)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_server, stop_server


def scrape(text: str) -> dict[str, list]:
    """name -> samples, parsed by prometheus-client (a malformed exposition raises)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict, name: str, sample: str | None = None, **labels) -> float:
    found = [s.value for s in families.get(name, []) if (sample is None or s.name == sample)
             and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found)


def test_metrics_in_process(client, services):
    before = scrape(client.get("/metrics").get_data(as_text=True))
    assert client.post("/api/v1/messages", json={"user_id": "m1", "text": "核酸检测在哪里做"}).status_code == 200
    assert client.post("/api/v1/messages", json={"user_id": "m2", "text": "转人工"}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = scrape(response.get_data(as_text=True))

    def grew(name, sample=None, **labels):
        return value(after, name, sample, **labels) - value(before, name, sample, **labels)

    assert grew("hotline_messages", "hotline_messages_total", channel="api") == 2
    assert grew("hotline_messages", "hotline_messages_total", channel="api", outcome="handoff") == 1
    assert grew("hotline_http_request_duration_seconds", "hotline_http_request_duration_seconds_count",
                route="/api/v1/messages", method="POST", status="2xx") == 2
    assert value(after, "hotline_queue_waiting", priority="1") == 1  # the "转人工" ticket waits
    assert value(after, "hotline_agents_on_duty") == 0
    info = after["hotline_kb_info"][0]  # an info metric is a gauge "<name>_info" in the text format
    assert info.labels["version"] == services.bot.kb.version and int(info.labels["entries"]) == len(services.bot.kb.entries)
    assert "hotline_outbox_backlog" in after and "hotline_callbacks_overdue" in after


def test_metrics_need_the_api_token_when_one_is_set(settings, engine, clock, tmp_path):
    from connectors.app import create_app
    from tests.conftest import build_services

    svc = build_services(settings, engine, f"sqlite:///{tmp_path / 't.db'}", clock, api_token="s3cret-token")
    try:
        client = create_app(svc).test_client()
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    finally:
        svc.close()


def test_metrics_add_up_across_worker_processes(session_dir, engine, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    server = start_server(session_dir / "var", {"DATABASE_URL": db_url, "HOTLINE_SERVER__WORKERS": "2"})
    try:
        port = server.url.rsplit(":", 1)[1]

        def send(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=30) as c:  # a new connection each time
                return c.post("/api/v1/messages", json={"user_id": f"w{i}", "text": "怎么查健康码"}).status_code

        # Sequential connections may all land on one worker (the kernel wakes the last waiter), so send
        # concurrent batches until both workers have answered; the totals must then add up over both.
        sent, files = 0, []
        with ThreadPoolExecutor(8) as pool:
            while len(files) < 2 and sent < 96:
                assert set(pool.map(send, range(sent, sent + 8))) == {200}
                sent += 8
                files = list((Path(session_dir / "var") / "metrics" / port).glob("counter_*.db"))
        assert len(files) >= 2, files  # samples written by more than one worker process
        totals = set()
        for _ in range(6):  # whichever worker answers the scrape, the totals are the same
            with httpx.Client(base_url=server.url, timeout=30) as c:
                families = scrape(c.get("/metrics").text)
            totals.add((value(families, "hotline_messages", "hotline_messages_total"),
                        value(families, "hotline_http_request_duration_seconds",
                              "hotline_http_request_duration_seconds_count", route="/api/v1/messages")))
        assert totals == {(sent, sent)}
    finally:
        stop_server(server)
