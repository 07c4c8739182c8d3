"""Change notifications: in-process, and across processes through a real Redis."""
import threading
import time
import uuid

import pytest

from bot.conversations.notify import Notifier as LocalNotifier
from bot.conversations.notify import RedisNotifier, TailNotifier
from bot.messages import Message

from tests.conftest import REDIS_URL


def test_local_wait_wakes_on_publish_and_times_out():
    notifier = LocalNotifier()
    seen = notifier.version("c1")
    assert notifier.wait("c1", seen, 0.05) is False
    threading.Timer(0.05, notifier.publish, args=({"c1"},)).start()
    started = time.monotonic()
    assert notifier.wait("c1", seen, 5) is True
    assert time.monotonic() - started < 2
    # a change to another conversation does not wake c1, a queue move does
    seen = notifier.version("c1")
    notifier.publish({"c2"})
    assert notifier.wait("c1", seen, 0.05) is False
    notifier.publish(set(), queue=True)
    assert notifier.wait("c1", seen, 0.05) is True


def test_committed_turns_notify_and_failed_transactions_do_not(services, monkeypatch):
    notifier = services.notifier
    reply = services.bot.handle(Message(user_id="n", text="你好", channel="api"))
    seen = notifier.version(reply.conversation_id)
    services.bot.handle(Message(user_id="n", text="谢谢", channel="api"))
    assert notifier.version(reply.conversation_id) != seen
    seen = notifier.version(reply.conversation_id)
    from bot.conversations.service import MessageScope

    def fail(self):
        raise RuntimeError("rolled back")

    monkeypatch.setattr(MessageScope, "flush", fail)
    with pytest.raises(RuntimeError):
        services.bot.handle(Message(user_id="n", text="转人工", channel="api"))
    assert notifier.version(reply.conversation_id) == seen


def test_without_redis_processes_wake_each_other_through_the_outbox(services):
    """Several worker processes on one database, no Redis: each tails the committed events."""
    other_process = TailNotifier(services.db, interval=0.05)
    other_process.start()
    try:
        reply = services.bot.handle(Message(user_id="tail", text="你好", channel="api"))
        seen = other_process.version(reply.conversation_id)
        threading.Timer(0.1, services.bot.handle,
                        args=(Message(user_id="tail", text="谢谢", channel="api"),)).start()
        started = time.monotonic()
        assert other_process.wait(reply.conversation_id, seen, 5) is True
        assert time.monotonic() - started < 1.5
    finally:
        other_process.close()


def test_coroutines_wait_without_threads():
    import asyncio

    notifier = LocalNotifier()

    async def scenario():
        seen = notifier.version("c1")
        waiters = [asyncio.ensure_future(notifier.wait_async("c1", seen, 5)) for _ in range(500)]
        await asyncio.sleep(0.05)
        assert notifier.waiting() == 500
        threading.Timer(0.05, notifier.publish, args=({"c1"},)).start()
        results = await asyncio.gather(*waiters)
        assert all(results) and notifier.waiting() == 0
        assert await notifier.wait_async("c2", notifier.version("c2"), 0.05) is False

    asyncio.run(scenario())


def test_redis_carries_wake_ups_between_processes(redis_available):
    # two notifiers = two server processes sharing one Redis
    publisher, listener = RedisNotifier(REDIS_URL), RedisNotifier(REDIS_URL)
    try:
        publisher.start()
        listener.start()
        conversation = f"redis-{uuid.uuid4().hex}"
        assert listener.subscribed.wait(5)
        seen = listener.version(conversation)
        threading.Timer(0.1, publisher.publish, args=({conversation},)).start()
        started = time.monotonic()
        assert listener.wait(conversation, seen, 5) is True
        assert time.monotonic() - started < 2
        seen = listener.version(conversation)
        publisher.publish(set(), queue=True)
        assert listener.wait(conversation, seen, 5) is True
    finally:
        publisher.close()
        listener.close()


def test_redis_down_still_wakes_local_waiters():
    notifier = RedisNotifier("redis://127.0.0.1:1/0")
    try:
        seen = notifier.version("c")
        notifier.publish({"c"})
        assert notifier.wait("c", seen, 0.5) is True
    finally:
        notifier.close()


def test_poll_refuses_a_deadline_that_never_passes():
    """Regression: a NaN timeout made ``poll`` loop forever (time + nan is never past)."""
    notifier = LocalNotifier()
    with pytest.raises(ValueError):
        notifier.poll("c1", lambda: None, lambda _: False, float("nan"))


def test_a_parked_long_poll_reads_the_view_once_unless_something_changes():
    """Regression (row 4 at 2,000 waiting citizens): every parked poll re-read its view every 5 s
    and once more at the deadline: 400 view calls a second that queued everyone else's messages
    (p99 2.7 s, bench/waiting.py). Now one read per poll, plus one per change."""
    import asyncio

    from connectors.asgi import LongPollFront

    notifier = LocalNotifier()
    calls = []

    def view(environ, start_response):  # what a long-poll view answers when nothing is new yet
        calls.append(time.monotonic())
        seen = notifier.version("c1")
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("X-Hotline-Wait", f"c1 {seen[0]} {seen[1]}")])
        return [b'{"turns": [], "read": %d}' % len(calls)]

    front = LongPollFront(view, notifier, threads=2)

    async def poll(wait: float, publish_after: float | None = None) -> tuple[int, bytes]:
        sent = []
        scope = {"type": "http", "method": "GET", "path": "/web/api/conversations/c1/turns",
                 "query_string": f"wait={wait}".encode(), "headers": [], "http_version": "1.1",
                 "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}

        async def receive():
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        if publish_after is not None:
            threading.Timer(publish_after, notifier.publish, args=({"c1"},)).start()
        await front(scope, receive, send)
        start = sent[0]
        assert all(k.lower() != b"x-hotline-wait" for k, _ in start["headers"])  # never shown to clients
        return start["status"], b"".join(m.get("body", b"") for m in sent[1:])

    started = time.monotonic()
    status, body = asyncio.run(poll(1.5))
    assert status == 200 and body == b'{"turns": [], "read": 1}'
    assert len(calls) == 1, f"{len(calls)} reads for one unchanged poll"
    assert 1.5 * 0.8 - 0.05 <= time.monotonic() - started < 1.5 + 0.5
    calls.clear()
    status, body = asyncio.run(poll(3, publish_after=0.3))
    assert len(calls) == 2 and body == b'{"turns": [], "read": 2}'  # a change: read again, still nothing new
