"""The rasa-sdk action server against a real hotline-bot server, over HTTP.

Both run as subprocesses: hotline-bot with the main project's interpreter
(``HOTLINE_PYTHON``), the action server (``python -m rasa_sdk --actions actions``)
with this virtualenv's. Requests are shaped like the ones Rasa sends to
``/webhook`` (``rasa.core.actions.action.RemoteAction``).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

rasa_sdk = pytest.importorskip("rasa_sdk")  # only in this integration's own venv

ACTIONS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = Path(os.environ.get("HOTLINE_BOT_ROOT", ACTIONS_DIR.parents[1]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hotline_python() -> str:
    python = os.environ.get("HOTLINE_PYTHON") or str(REPO_ROOT / ".venv" / "bin" / "python")
    if not Path(python).exists():
        pytest.fail(f"hotline-bot's python {python!r} not found: set HOTLINE_PYTHON")
    return python


class Process:
    """A subprocess in its own process group, with its log."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{url}: process exited early:\n{self.output()}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        log = self.output()
        self.stop()
        raise RuntimeError(f"{url} not ready after {timeout}s:\n{log}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.close()


@pytest.fixture(scope="session")
def hotline(tmp_path_factory) -> Iterator[str]:
    """``hotline-bot serve`` (real KB, fresh SQLite and index in a temp dir)."""
    data_dir = tmp_path_factory.mktemp("hotline-var")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "HOTLINE_DATABASE_URL"}}
    env.update(HOTLINE_DATA_DIR=str(data_dir), HOTLINE_SERVER__HOST="127.0.0.1", HOTLINE_SERVER__PORT=str(port),
               HOTLINE_SERVER__WORKERS="1", HOTLINE_OPEN_READ_API="1", PYTHONPATH=str(REPO_ROOT))
    proc = Process([hotline_python(), "-m", "connectors.cli", "serve"], env, REPO_ROOT, data_dir / "server.log")
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(url + "/readyz", timeout=300)
    yield url
    proc.stop()


def start_action_server(hotline_url: str, log_dir: Path) -> tuple[Process, str]:
    port = free_port()
    env = dict(os.environ, HOTLINE_BOT_URL=hotline_url, HOTLINE_BOT_TIMEOUT="30")
    proc = Process([sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
                   env, ACTIONS_DIR, log_dir / f"actions-{port}.log")
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(url + "/health", timeout=60)
    return proc, url


@pytest.fixture(scope="session")
def action_server(hotline, tmp_path_factory) -> Iterator[str]:
    """The real rasa-sdk action server, pointed at the live hotline-bot."""
    proc, url = start_action_server(hotline, tmp_path_factory.mktemp("actions"))
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def orphan_action_server(tmp_path_factory) -> Iterator[str]:
    """An action server whose hotline-bot URL has nothing listening."""
    proc, url = start_action_server(f"http://127.0.0.1:{free_port()}", tmp_path_factory.mktemp("orphan"))
    yield url
    proc.stop()


DOMAIN = {
    "version": "3.1",
    "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True},
    "intents": ["faq", "ask_human", "greet"],
    "entities": [],
    "slots": {
        "hotline_conversation_id": {"type": "any", "influence_conversation": False, "initial_value": None,
                                    "mappings": [{"type": "custom"}]},
        "hotline_handoff_id": {"type": "any", "influence_conversation": False, "initial_value": None,
                               "mappings": [{"type": "custom"}]},
    },
    "responses": {},
    "actions": ["action_hotline_answer", "action_hotline_handoff"],
    "forms": {},
    "e2e_actions": [],
}


def action_call(action: str, sender_id: str, text: str, slots: dict[str, Any] | None = None,
                intent: str = "faq") -> dict[str, Any]:
    """The JSON a Rasa 3.x server POSTs to the action server's ``/webhook``."""
    now = time.time()
    parse_data = {"intent": {"name": intent, "confidence": 0.93}, "entities": [], "text": text,
                  "message_id": uuid.uuid4().hex, "metadata": {},
                  "intent_ranking": [{"name": intent, "confidence": 0.93}]}
    all_slots = {"hotline_conversation_id": None, "hotline_handoff_id": None, "session_started_metadata": None}
    all_slots.update(slots or {})
    events = [
        {"event": "action", "timestamp": now - 3, "name": "action_session_start", "policy": None,
         "confidence": 1.0, "action_text": None, "hide_rule_turn": False},
        {"event": "session_started", "timestamp": now - 3},
        {"event": "action", "timestamp": now - 3, "name": "action_listen", "policy": None,
         "confidence": None, "action_text": None, "hide_rule_turn": False},
        *({"event": "slot", "timestamp": now - 2, "name": k, "value": v}
          for k, v in (slots or {}).items()),
        {"event": "user", "timestamp": now - 1, "text": text, "parse_data": parse_data,
         "input_channel": "rest", "message_id": parse_data["message_id"], "metadata": {}},
        {"event": "user_featurization", "timestamp": now, "use_text_for_featurization": False},
    ]
    return {
        "next_action": action,
        "sender_id": sender_id,
        "tracker": {
            "sender_id": sender_id,
            "slots": all_slots,
            "latest_message": parse_data,
            "latest_event_time": now,
            "followup_action": None,
            "paused": False,
            "stack": [],
            "events": events,
            "latest_input_channel": "rest",
            "active_loop": {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
        "domain": DOMAIN,
        "version": rasa_sdk.__version__,
        "domain_digest": "hotline-test-domain",
    }


def run(url: str, action: str, sender_id: str, text: str, **kwargs) -> dict[str, Any]:
    response = httpx.post(url + "/webhook", json=action_call(action, sender_id, text, **kwargs), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def slots_set(result: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result["events"] if e["event"] == "slot"}


def test_action_server_lists_the_hotline_actions(action_server):
    names = {a["name"] for a in httpx.get(action_server + "/actions").json()}
    assert names == {"action_hotline_answer", "action_hotline_handoff"}


def test_chinese_answer_with_source_and_conversation_slot(action_server, hotline):
    sender = f"zh-{uuid.uuid4().hex[:8]}"
    result = run(action_server, "action_hotline_answer", sender, "核酸结果多久出来")

    [message] = result["responses"]
    assert "核酸结果" in message["text"] and "24小时" in message["text"]
    assert "来源：国家卫生健康委员会" in message["text"] and "更新于 20" in message["text"]
    assert message["buttons"] and all(b["payload"].startswith("/faq{") for b in message["buttons"])
    conversation_id = slots_set(result)["hotline_conversation_id"]
    assert "hotline_handoff_id" not in slots_set(result)

    conversation = httpx.get(f"{hotline}/api/v1/conversations/{conversation_id}").json()
    assert conversation["channel"] == "api" and conversation["user"].startswith("p_")
    assert [t["role"] for t in conversation["turns"]] == ["user", "bot"]
    assert conversation["turns"][1]["entry_id"] == "testing.pcr_results_time"


def test_second_call_with_slot_continues_the_conversation(action_server, hotline):
    sender = f"en-{uuid.uuid4().hex[:8]}"
    first = run(action_server, "action_hotline_answer", sender, "How long do PCR test results take?")
    conversation_id = slots_set(first)["hotline_conversation_id"]
    assert "Source:" in first["responses"][0]["text"] and "(updated 20" in first["responses"][0]["text"]

    second = run(action_server, "action_hotline_answer", sender, "Is the PCR test free?",
                 slots={"hotline_conversation_id": conversation_id})
    assert slots_set(second)["hotline_conversation_id"] == conversation_id
    assert second["responses"] and "Source:" in second["responses"][0]["text"]

    turns = httpx.get(f"{hotline}/api/v1/conversations/{conversation_id}").json()["turns"]
    assert [t["text"] for t in turns if t["role"] == "user"] == [
        "How long do PCR test results take?", "Is the PCR test free?"]


@pytest.mark.parametrize("text", ["我要转人工", "I want to talk to a person"])
def test_asking_for_a_person_sets_the_handoff_slot(action_server, hotline, text):
    sender = f"h-{uuid.uuid4().hex[:8]}"
    result = run(action_server, "action_hotline_answer", sender, text, intent="ask_human")

    slots = slots_set(result)
    handoff = httpx.get(f"{hotline}/api/v1/handoffs/{slots['hotline_handoff_id']}").json()
    assert handoff["reason"] == "user_request" and handoff["channel"] == "api"
    assert handoff["conversation_id"] == slots["hotline_conversation_id"] and handoff["user"].startswith("p_")
    assert result["responses"] and result["responses"][0]["text"]


def test_handoff_action_keeps_the_conversation(action_server, hotline):
    sender = f"ho-{uuid.uuid4().hex[:8]}"
    first = run(action_server, "action_hotline_answer", sender, "健康码变黄了怎么办")
    conversation_id = slots_set(first)["hotline_conversation_id"]

    result = run(action_server, "action_hotline_handoff", sender, "找个人工客服",
                 slots={"hotline_conversation_id": conversation_id}, intent="ask_human")
    slots = slots_set(result)
    assert slots["hotline_conversation_id"] == conversation_id
    handoff = httpx.get(f"{hotline}/api/v1/handoffs/{slots['hotline_handoff_id']}").json()
    assert handoff["conversation_id"] == conversation_id and handoff["reason"] == "user_request"
    assert [t["text"] for t in handoff["transcript"] if t["role"] == "user"] == ["健康码变黄了怎么办", "/ask_human"]


@pytest.mark.parametrize("text", ["做核酸要钱吗", "Is the PCR test free?"])
def test_unreachable_hotline_bot_yields_an_apology(orphan_action_server, text):
    result = run(orphan_action_server, "action_hotline_answer", "u-orphan", text)
    assert result["events"] == []
    [message] = result["responses"]
    assert "抱歉" in message["text"] and "Sorry" in message["text"]


def test_hotline_bot_error_yields_an_apology(action_server):
    result = run(action_server, "action_hotline_answer", "u-long", "核酸" * 1500)  # > 2,000 chars: 400
    assert result["events"] == []
    assert "抱歉" in result["responses"][0]["text"] and "Sorry" in result["responses"][0]["text"]
