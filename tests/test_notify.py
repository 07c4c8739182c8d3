"""Change notifications: in-process, and across processes through a real Redis."""
import threading
import time
import uuid

import pytest

from bot.messages import Message
from bot.notify import LocalNotifier, RedisNotifier

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


def test_committed_turns_notify_and_failed_transactions_do_not(fresh_bot):
    notifier = fresh_bot.store.notifier
    seen = notifier.version("conv-n")
    fresh_bot.handle(Message(user_id="n", text="你好", conversation_id="conv-n"))
    assert notifier.version("conv-n") != seen
    seen = notifier.version("conv-x")
    with pytest.raises(RuntimeError):
        with fresh_bot.store.transaction() as session:
            fresh_bot.store.mark_changed(session, "conv-x", queue=True)
            raise RuntimeError("rolled back")
    assert notifier.version("conv-x") == seen


def test_redis_carries_wake_ups_between_processes(redis_available):
    # two notifiers = two server processes sharing one Redis
    publisher, listener = RedisNotifier(REDIS_URL), RedisNotifier(REDIS_URL)
    try:
        conversation = f"redis-{uuid.uuid4().hex}"
        time.sleep(0.3)  # let both subscriptions start
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
