"""The contact directory (issue 9): answers embed contacts by reference, so a changed number is
edited once; stale contacts are warnings of `kb validate`; "北京防疫热线是多少" is answered
from the directory with the region from the text or the conversation.

Why: outdated phone numbers are what a hotline's own users complain about most."""
from __future__ import annotations

import shutil
import subprocess
import sys

import yaml

from bot.config import PROJECT_ROOT, default_knowledge_dir
from bot.kb.loader import validate_knowledge_base
from tests.live_server import NOW
from tests.test_kb_live import _login


def _kb_copy(tmp_path):
    root = tmp_path / "kb"
    shutil.copytree(default_knowledge_dir(), root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_validate_flags_unknown_references_and_stale_contacts(tmp_path):
    root = _kb_copy(tmp_path)
    faq = root / "faq" / "hotline.yml"
    faq.write_text(faq.read_text(encoding="utf-8").replace("全国各地普遍开通了12345政务服务便民热线",
                                                            "请拨打{{contact:nowhere_123}}", 1), encoding="utf-8")
    contacts = yaml.safe_load((root / "contacts.yml").read_text(encoding="utf-8"))
    contacts["contacts"][0]["last_verified"] = "2020-01-01"
    (root / "contacts.yml").write_text(yaml.safe_dump(contacts, allow_unicode=True), encoding="utf-8")
    problems = validate_knowledge_base(root, NOW.date())
    unknown = [p for p in problems if "nowhere_123" in p.message]
    assert unknown and unknown[0].field == "answer.zh" and unknown[0].severity == "error"
    stale = [p for p in problems if p.field == "last_verified"]
    assert stale and stale[0].severity == "warning" and stale[0].entry == "national_12345"
    # the CLI lists the stale contact as a warning and, with the reference fixed, exits 0
    faq.write_text(faq.read_text(encoding="utf-8").replace("{{contact:nowhere_123}}", "{{contact:national_12345}}"),
                   encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "connectors.cli", "kb", "validate", "--today", f"{NOW:%Y-%m-%d}"],
                          cwd=PROJECT_ROOT,
                          env={"HOTLINE_KNOWLEDGE_DIR": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING" in done.stderr and "national_12345" in done.stderr and "last_verified" in done.stderr


def _ask(client, user, text, new=True):
    response = client.post("/api/v1/messages", json={"user_id": user, "text": text, "new_conversation": new})
    assert response.status_code == 200, response.json
    return response.json


def test_contact_reference_changed_once_and_directory_answers(editing):
    from connectors.app import create_app

    app = create_app(editing)
    citizen, editor = app.test_client(), _login(app)
    # the directory answers the hotline number for the region in the question...
    reply = _ask(citizen, "d1", "北京防疫热线是多少")
    assert reply["replies"][0]["text"].startswith("北京12345市民服务热线：12345"), reply
    # ...or for the region the conversation already has
    _ask(citizen, "d2", "我在上海，核酸检测多少钱")
    reply = _ask(citizen, "d2", "防疫热线是多少", new=False)
    assert reply["replies"][0]["text"].startswith("上海12345市民服务热线"), reply
    # an answer embeds a contact by reference
    entry = editor.get("/agents/api/kb/entries/testing.pcr_fee").json["published"]
    entry["answer"] = {**entry["answer"], "zh": "收费问题请咨询{{contact:beijing_12345}}。"}
    assert editor.post("/agents/api/kb/entries/testing.pcr_fee", json={"entry": entry}).status_code == 200
    bad = {**entry, "answer": {**entry["answer"], "zh": "请拨打{{contact:nope}}"}}
    refused = editor.post("/agents/api/kb/entries/testing.pcr_fee", json={"entry": bad})
    assert refused.status_code == 422 and refused.json["error"]["problems"][0]["field"] == "answer.zh"
    assert editor.post("/agents/api/kb/publish", json={}).status_code == 200
    text = _ask(citizen, "d3", "核酸检测多少钱")["replies"][0]["text"]
    assert text == "收费问题请咨询北京12345市民服务热线：12345（24小时）。"
    # the number changes once, in the directory: every answer and the directory reply follow
    listed = editor.get("/agents/api/kb/contacts").json["contacts"]
    beijing = next(c for c in listed if c["id"] == "beijing_12345")
    changed = {**beijing["published"], "phone": "010-12345", "last_verified": "2026-12-01"}
    bad_contact = {**changed, "phone": ""}
    refused = editor.post("/agents/api/kb/contacts/beijing_12345", json={"contact": bad_contact})
    assert refused.status_code == 422 and refused.json["error"]["problems"][0]["field"] == "phone"
    saved = editor.post("/agents/api/kb/contacts/beijing_12345", json={"contact": changed})
    assert saved.status_code == 200 and saved.json["status"] == "draft", saved.json
    assert "contact:beijing_12345" in editor.get("/agents/api/kb/status").json["pending"]
    assert editor.post("/agents/api/kb/publish", json={}).status_code == 200
    assert "010-12345" in _ask(citizen, "d4", "核酸检测多少钱")["replies"][0]["text"]
    assert "010-12345" in _ask(citizen, "d5", "北京防疫热线是多少")["replies"][0]["text"]
    # stale flag for editors: the test clock is 2026-12-01; contacts verified 2026-11-20 are fresh
    assert not any(c["stale"] for c in editor.get("/agents/api/kb/contacts").json["contacts"])
    history = editing.kb_live.store.history("contact:beijing_12345")  # contacts share the revision history
    assert [h["content"]["phone"] for h in history] == ["010-12345", "12345"]
