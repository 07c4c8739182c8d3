"""The unanswered-question inbox: what the bot failed on, grouped, for editors.

Why: the questions a bot fails on are the best list of what the KB lacks, and
nobody reads transcripts. This reads the conversation store (never writes it):
user questions the bot answered with "please rephrase", "not covered", a
did-you-mean (and which option the citizen then picked: implicit evidence the
question belongs to that entry), a low-confidence handoff, or an answer that got
a 👎. Similar questions are grouped by embedding (greedy, cosine ≥ ``threshold``),
ranked by how many citizens asked and how recently. Personal data is masked:
numbers as everywhere (``privacy.mask``, already applied when turns are stored)
and names after 我叫 / my name is.

The only state it owns is the dismissals table; "add as paraphrase" goes through
the KB store as a draft like any other edit.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Row, func, select

from bot import commands
from bot.conversations.privacy import mask_names
from bot.db import Database
from bot.models import Conversation, Feedback, KbInboxDismissal, Turn, utcnow
from bot.text import normalise

if TYPE_CHECKING:
    from bot.engine import Bot

FAILED_ACTIONS = {"rephrase", "not_covered", "did_you_mean"}
def question_key(text: str) -> str:
    return hashlib.sha256(normalise(text).rstrip("?？!！。. ").encode()).hexdigest()


@dataclass
class Failure:
    text: str  # masked
    conversation_id: str
    user: str
    at: dt.datetime
    reason: str  # rephrase | not_covered | did_you_mean | handoff | thumbs_down
    picked: str | None = None  # the entry the citizen chose after a did-you-mean


@dataclass
class Group:
    examples: list[Failure] = field(default_factory=list)
    vector: np.ndarray | None = None

    def to_dict(self, guess: dict[str, Any] | None) -> dict[str, Any]:
        citizens = {f.user for f in self.examples}
        texts = list(dict.fromkeys(f.text for f in self.examples))
        reasons: dict[str, int] = {}
        picked: dict[str, int] = {}
        for f in self.examples:
            reasons[f.reason] = reasons.get(f.reason, 0) + 1
            if f.picked:
                picked[f.picked] = picked.get(f.picked, 0) + 1
        last = max(f.at for f in self.examples)
        return {"key": question_key(texts[0]), "questions": texts[:20], "count": len(self.examples),
                "citizens": len(citizens), "last_at": last.isoformat() + "Z", "reasons": reasons,
                "picked": picked, "guess": guess}


class Inbox:
    def __init__(self, db: Database, clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.clock = clock

    def failures(self, days: int = 30, limit: int = 20000, answers: dict[str, str] | None = None) -> list[Failure]:
        """``answers``: answer text -> entry id; an agent reply after a handoff that contains one (the
        console's "insert answer") is evidence the question belongs to that entry."""
        since = self.clock() - dt.timedelta(days=days)
        with self.db.read() as session:
            bots = session.execute(
                select(Turn.id, Turn.conversation_id, Turn.seq, Turn.payload, Turn.created_at, Turn.entry_id)
                .where(Turn.role == "bot", Turn.created_at >= since).order_by(Turn.id.desc()).limit(limit)).all()
            downs = {row.turn_id for row in session.execute(
                select(Feedback.turn_id).where(Feedback.value == "down", Feedback.created_at >= since))}
            wanted: dict[tuple[str, int], tuple[str, dt.datetime]] = {}
            for turn in bots:
                payload = turn.payload or {}
                action = payload.get("action")
                reason = None
                if action in FAILED_ACTIONS:
                    reason = action
                elif action == "handoff" and payload.get("reply_to_seq") and turn.entry_id is None \
                        and payload.get("kind") != "emergency":
                    reason = "handoff"
                elif turn.id in downs:
                    reason = "thumbs_down"
                if reason and payload.get("reply_to_seq"):
                    key = (turn.conversation_id, int(payload["reply_to_seq"]))
                    if key not in wanted or reason == "did_you_mean":
                        wanted[key] = (reason, turn.created_at)
            if not wanted:
                return []
            conversations = {c for c, _ in wanted}
            users = dict(session.execute(select(Conversation.id, Conversation.user_id)
                                         .where(Conversation.id.in_(conversations))).all())
            rows = session.execute(select(Turn.conversation_id, Turn.seq, Turn.text, Turn.payload)
                                   .where(Turn.conversation_id.in_(conversations), Turn.role == "user")).all()
            agent_rows = session.execute(select(Turn.conversation_id, Turn.seq, Turn.text).where(
                Turn.conversation_id.in_(conversations), Turn.role == "agent")).all() if answers else []
        by_seq = {(r.conversation_id, r.seq): r for r in rows}
        agent_by_conversation: dict[str, list[Row[str, int, str]]] = {}
        for row in agent_rows:
            agent_by_conversation.setdefault(row.conversation_id, []).append(row)
        out: list[Failure] = []
        for (conversation_id, seq), (reason, at) in wanted.items():
            user_turn = by_seq.get((conversation_id, seq))
            if user_turn is None or (user_turn.payload or {}).get("command"):
                continue  # a button press, not a question
            picked = None
            if reason == "did_you_mean":  # the citizen's next turn: a button naming one entry?
                for later in range(seq + 1, seq + 4):
                    nxt = by_seq.get((conversation_id, later))
                    if nxt is not None:
                        command = commands.parse_command(nxt.text or "")
                        if command is not None and command.name == commands.FAQ:
                            picked = str(command.args.get("entry") or "") or None
                        break
            if reason == "handoff" and answers:  # the agent inserted a KB answer after this question
                for row in sorted(agent_by_conversation.get(conversation_id, []), key=lambda r: r.seq):
                    if row.seq > seq:
                        picked = next((e for text, e in answers.items() if text in (row.text or "")), None)
                        if picked:
                            break
            out.append(Failure(mask_names(user_turn.text), conversation_id, users.get(conversation_id, ""), at,
                               reason, picked))
        return out

    def groups(self, bot: Bot, days: int = 30, threshold: float = 0.8, limit: int = 50) -> list[dict[str, Any]]:
        """Failures grouped by meaning, most citizens first, then most recent; questions that are
        now paraphrases of a live entry, or dismissed, are left out."""
        with self.db.read() as session:
            dismissed = {k for (k,) in session.execute(select(KbInboxDismissal.key))}
        known = {question_key(q) for e in bot.kb.entries.values() for q in [*e.questions.zh, *e.questions.en]}
        groups: list[Group] = []
        answers = {text: e.id for e in bot.kb.entries.values() for text in (e.answer.zh, e.answer.en)}
        for failure in sorted(self.failures(days, answers=answers), key=lambda f: f.at, reverse=True):
            key = question_key(failure.text)
            if key in dismissed or key in known or question_key(paraphrase_text(failure.text)) in known \
                    or not normalise(failure.text).strip():
                continue
            vector = bot.vector(normalise(failure.text))
            best, best_score = None, threshold
            for group in groups:
                score = float(group.vector @ vector)
                if score >= best_score:
                    best, best_score = group, score
            if best is None:
                groups.append(Group([failure], vector))
            else:
                best.examples.append(failure)
        groups.sort(key=lambda g: (len({f.user for f in g.examples}), max(f.at for f in g.examples)), reverse=True)
        out = []
        for group in groups[:limit]:
            out.append(group.to_dict(self._guess(bot, group)))
        return out

    @staticmethod
    def _guess(bot: Bot, group: Group) -> dict[str, Any] | None:
        """The entry the citizens picked after a did-you-mean, else the bot's best candidate."""
        picked = [f.picked for f in group.examples if f.picked and f.picked in bot.kb.entries]
        if picked:
            entry_id = max(set(picked), key=picked.count)
            return {"entry_id": entry_id, "title": bot.kb.entries[entry_id].title("zh"), "score": None,
                    "evidence": "picked"}  # by the citizen after a did-you-mean, or inserted by an agent
        candidates = bot.understand(group.examples[0].text, top_k=3).candidates
        if not candidates:
            return None
        top = candidates[0]
        return {"entry_id": top.entry_id, "title": bot.kb.entries[top.entry_id].title("zh"),
                "score": round(top.score, 4), "evidence": "retrieval"}

    def usage(self, days: int = 30) -> dict[str, dict[str, int]]:
        """Per entry: how often it was answered and how many 👎 it got in ``days`` (the editor's
        "most asked" and "worst rated" sorts)."""
        since = self.clock() - dt.timedelta(days=days)
        out: dict[str, dict[str, int]] = {}
        with self.db.read() as session:
            for entry_id, count in session.execute(
                    select(Turn.entry_id, func.count()).where(Turn.role == "bot", Turn.entry_id.is_not(None),
                                                              Turn.created_at >= since).group_by(Turn.entry_id)):
                if entry_id is None:  # excluded by the query; narrows the column's type
                    continue
                out.setdefault(entry_id, {"asked": 0, "down": 0})["asked"] = count
            for entry_id, count in session.execute(
                    select(Feedback.entry_id, func.count()).where(Feedback.value == "down", Feedback.entry_id.is_not(None),
                                                                  Feedback.created_at >= since)
                    .group_by(Feedback.entry_id)):
                if entry_id is None:  # excluded by the query; narrows the column's type
                    continue
                out.setdefault(entry_id, {"asked": 0, "down": 0})["down"] = count
        return out

    def dismiss(self, questions: list[str], actor: str) -> int:
        now = self.clock()
        with self.db.transaction() as session:
            for text in questions:
                key = question_key(text)
                if session.get(KbInboxDismissal, key) is None:
                    session.add(KbInboxDismissal(key=key, text=mask_names(text)[:500], dismissed_by=actor,
                                                 dismissed_at=now))
            from bot.kb.store import _audit

            _audit(session, actor, "kb.inbox_dismiss", "", {"questions": len(questions)}, now)
        return len(questions)


_CLAUSE = re.compile(r"[^，,。；;！!？?]+[，,。；;！!？?]*")


def paraphrase_text(question: str) -> str:
    """A masked question made fit to be a paraphrase: clauses holding masked personal data
    ("我叫***，", "电话139****5678") are dropped; kept whole when nothing else would remain."""
    clauses = _CLAUSE.findall(question)
    kept = "".join(c for c in clauses if "*" not in c).strip()
    kept = kept.rstrip("，,；;")
    return kept if kept and re.search(r"\w", kept) else question.strip()


def add_paraphrases(content: dict[str, Any], questions: list[str]) -> dict[str, Any]:
    """The entry with ``questions`` appended to the zh or en paraphrases (by script), duplicates skipped."""
    out = dict(content)
    current = {"zh": list(content["questions"]["zh"]), "en": list(content["questions"]["en"])}
    seen = {question_key(q) for q in current["zh"] + current["en"]}
    for text in questions:
        text = paraphrase_text(text)
        if not text or question_key(text) in seen:
            continue
        lang = "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
        current[lang].append(text)
        seen.add(question_key(text))
    out["questions"] = current
    return out
