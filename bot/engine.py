"""The bot as one plain object: ``Bot.handle(Message) -> Reply``.

Connectors, the CLI and tests all call this; it knows nothing of HTTP.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bot import commands
from bot.config import Settings
from bot.encoders import Encoder, build_encoder, encode
from bot.index import SearchIndex, load_or_build_index
from bot.intents import FAQ_INTENT, IntentPrediction
from bot.kb import KnowledgeBase, load_knowledge_base
from bot.conversations.service import ConversationError, MessageScope, StoredTurn
from bot.conversations.status import ENDED, WITH_PERSON
from bot.messages import Button, HandoffInfo, Message, Reply, ReplyMessage
from bot.models import utcnow
from bot.policy import Decision, DecisionPolicy
from bot.responses import Responses
from bot.retrieval import Candidate, HybridRetriever
from bot.safety import EmergencyDetector
from bot.text import DomainTokenizer, SynonymMap, detect_language, normalise, reply_language

if TYPE_CHECKING:
    from bot.conversations.service import ConversationService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Understanding:
    """Everything the bot learned from one text, before any decision."""

    normalised: str
    language: str
    emergency: str | None
    intent: IntentPrediction
    candidates: list[Candidate]


class _VectorCache:
    """Small LRU of query vectors: hotlines see the same questions again and again."""

    def __init__(self, size: int = 4096):
        self._size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
            return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        with self._lock:
            self._items[key] = vector
            if len(self._items) > self._size:
                self._items.popitem(last=False)


class Bot:
    """Understanding (text → safety → intents → retrieval → policy) plus the turn of a
    conversation around it. The conversation half is the ``ConversationService``;
    the Bot never writes a status or a ticket itself."""

    def __init__(self, settings: Settings, kb: KnowledgeBase, tokenizer: DomainTokenizer,
                 encoder: Encoder, index: SearchIndex,
                 conversations: "ConversationService | None" = None,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.settings = settings
        self.kb = kb
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.index = index
        self.conversations = conversations
        self.clock = clock
        thresholds = settings.thresholds
        self.retriever = HybridRetriever(index.doc_entry_ids, index.lexical, index.dense,
                                         thresholds.dense_weight, thresholds.lexical_saturation,
                                         lexical_entry_ids=index.lexical_entry_ids)
        self.safety = EmergencyDetector.from_file(kb.safety_path)
        self.policy = DecisionPolicy(kb, thresholds, settings.max_failures_before_handoff)
        self.responses = Responses.from_file(kb.root / "responses.yml")
        self._vectors = _VectorCache()
        self._warm = False

    @property
    def ready(self) -> bool:
        """True once ``warm_up`` ran: the first citizen does not pay for loading weights."""
        return self._warm

    def warm_up(self) -> None:
        for text in ("核酸检测多少钱", "my health code is yellow"):
            self.understand(text)
        self._warm = True

    @classmethod
    def load(cls, settings: Settings | None = None) -> "Bot":
        """The understanding half only (models and index), no database: eval, calibration, tests."""
        settings = settings or Settings()
        kb = load_knowledge_base(settings.knowledge_dir)
        tokenizer = DomainTokenizer(kb.userdict_path, SynonymMap.from_file(kb.synonyms_path))
        encoder = build_encoder(settings.encoder, settings.encoder_threads)
        index = load_or_build_index(kb, tokenizer, encoder, settings.index_dir, settings.encoder_key)
        return cls(settings, kb, tokenizer, encoder, index)

    def with_conversations(self, conversations: "ConversationService") -> "Bot":
        """The same loaded models over another conversation store (no reload)."""
        bot = copy.copy(self)
        bot.conversations = conversations
        bot.clock = conversations.clock
        return bot

    # -- understanding (no side effects) ---------------------------------------

    def vector(self, normalised_text: str) -> np.ndarray:
        cached = self._vectors.get(normalised_text)
        if cached is None:
            cached = encode(self.encoder, [normalised_text])[0]
            self._vectors.put(normalised_text, cached)
        return cached

    def understand(self, text: str, top_k: int = 10) -> Understanding:
        normalised = normalise(text)
        vector = self.vector(normalised)
        candidates = self.retriever.run(self.tokenizer.tokens(normalised), vector, top_k=top_k)
        return Understanding(
            normalised=normalised,
            language=detect_language(normalised),
            emergency=self.safety.run(normalised),
            intent=self.index.intents.run(normalised, vector),
            candidates=candidates,
        )

    # -- handling (persists every turn) ----------------------------------------

    def handle(self, message: Message, today: dt.date | None = None) -> Reply:
        """One citizen message: understood outside the transaction, then recorded and answered in one."""
        message.validate(self.settings.max_message_chars)
        if self.conversations is None:
            raise RuntimeError("this Bot has no conversation store (use Services or with_conversations)")
        today = today or self.clock().date()
        command = commands.parse_command(message.text)
        understanding = None if command else self.understand(message.text)
        guess = reply_language(understanding.language) if understanding else (message.language or "zh")
        with self.conversations.message(message, guess) as scope:
            conv = scope.conversation
            if message.client_message_id:
                replayed = scope.replay(message.client_message_id)
                if replayed is not None:
                    return self._replayed(scope, replayed)
            if conv.turn_count >= self.settings.limits.max_turns_per_conversation:
                raise ConversationError("limited", "this conversation has reached its length limit; "
                                                   "start a new conversation", "conversation_id")
            if message.language and command:
                conv.language = message.language  # button payloads carry no language: follow the client
            elif understanding and any(ch.isalpha() for ch in understanding.normalised):
                conv.language = reply_language(understanding.language)
            language = conv.language
            scope.add_turn("user", message.text, payload={"command": command.name} if command else None,
                           client_message_id=message.client_message_id)
            if conv.status in WITH_PERSON:
                return self._while_handed_off(scope, understanding, language)
            if conv.status in ENDED:
                scope.resume()
            decision = self._decide(conv, command, understanding, today)
            if understanding and decision.intent == FAQ_INTENT and understanding.candidates:
                conv.last_candidates = self._top3(understanding.candidates, language)
            return self._act(scope, decision, language)

    def _replayed(self, scope: MessageScope, turns: list[StoredTurn]) -> Reply:
        conv = scope.conversation
        first = turns[0] if turns else None
        return Reply(conversation_id=conv.id, replies=[ReplyMessage.from_dict(t.payload, t.text) for t in turns],
                     intent=first.intent if first else "replay", confidence=first.score or 0.0 if first else 0.0,
                     language=conv.language, entry_id=first.entry_id if first else None,
                     candidates=list(conv.last_candidates or []), handoff=scope.handoff_info(),
                     status=str(conv.status), turn_ids=[t.id for t in turns], replayed=True)

    def _decide(self, conv, command: commands.Command | None,
                understanding: Understanding | None, today: dt.date) -> Decision:
        if command is not None:
            if command.name == commands.FAQ and self.kb.get(str(command.args.get("entry"))):
                return self.policy.answer(str(command.args["entry"]), 1.0, today)
            if command.name == commands.ASK_HUMAN:
                return Decision("handoff", "ask_human", 1.0, reason="user_request")
            if command.name in {"greet", "goodbye", "thanks"}:
                return Decision("smalltalk", command.name, 1.0)
            return self.policy.failure(0.0, conv.failures)  # none_of_these, unknown payloads
        assert understanding is not None
        return self.policy.run(emergency=understanding.emergency, intent=understanding.intent,
                               candidates=understanding.candidates, failures=conv.failures, today=today)

    def _act(self, scope: MessageScope, decision: Decision, language: str) -> Reply:
        conv = scope.conversation
        conv.failures = conv.failures + 1 if decision.counts_as_failure else 0
        handoff_info = None
        if decision.action == "handoff":
            # "转人工" is not the question: the agent should see what the citizen asked before it.
            handoff_info = scope.open_handoff(decision.reason or "user_request", urgent=decision.urgent,
                                              candidates=list(conv.last_candidates or []),
                                              kb_version=self.kb.version,
                                              skip_current=decision.reason == "user_request")
            conv.failures = 0
            if handoff_info is None:  # already waiting for a person in another conversation
                replies = [self.emergency_reply(language)] if decision.reason == "emergency" else []
                replies.append(ReplyMessage(self.responses("already_waiting", language)))
            else:
                replies = self._handoff_replies(decision, language, handoff_info.queue_position or 1)
        else:
            replies = self._render(decision, language)
        reply = self._record_replies(scope, replies, decision.intent, decision.confidence, decision.entry_id,
                                     decision.action, language, handoff_info)
        return dataclasses.replace(reply, handoff_opened=handoff_info is not None)

    def _record_replies(self, scope: MessageScope, replies: list[ReplyMessage], intent: str, confidence: float,
                        entry_id: str | None, action: str, language: str,
                        handoff_info: HandoffInfo | None) -> Reply:
        user_seq = scope.conversation.turn_count
        for reply in replies:
            scope.add_turn("bot", reply.text, intent=intent, entry_id=entry_id, score=round(confidence, 4),
                           payload={k: v for k, v in reply.to_dict().items() if k != "text"}
                           | {"action": action, "kb_version": self.kb.version, "reply_to_seq": user_seq})
        scope.flush()
        conv = scope.conversation
        return Reply(conversation_id=conv.id, replies=replies, intent=intent, confidence=confidence,
                     language=language, entry_id=entry_id, candidates=list(conv.last_candidates or []),
                     handoff=handoff_info, status=str(conv.status),
                     turn_ids=[t.id for t in scope.turns if t.role == "bot"])

    def _while_handed_off(self, scope: MessageScope, understanding: Understanding | None, language: str) -> Reply:
        """A person owns the conversation: record, never answer over the agent — except a red
        flag, which always gets the emergency screen and alerts the agents again."""
        handoff = scope.handoff_info()
        emergency = understanding is not None and self._is_emergency(understanding)
        replies: list[ReplyMessage] = []
        if emergency:
            handoff = scope.escalate()
            replies.append(self.emergency_reply(language))
        elif handoff is not None and handoff.status == "waiting":
            replies.append(ReplyMessage(self.responses("handoff_waiting", language,
                                                       position=handoff.queue_position or 1)))
        intent = "emergency" if emergency else (understanding.intent.intent if understanding else "command")
        return self._record_replies(scope, replies, intent, 1.0, None, "handoff_wait", language, handoff)

    def _is_emergency(self, understanding: Understanding) -> bool:
        t = self.settings.thresholds
        return bool(understanding.emergency) or (understanding.intent.intent == "emergency"
                                                 and understanding.intent.confidence >= t.intent)

    # -- rendering ---------------------------------------------------------------

    def _top3(self, candidates: list[Candidate], language: str) -> list[dict[str, Any]]:
        return [{"entry_id": c.entry_id, "score": round(c.score, 4),
                 "title": self.kb.entries[c.entry_id].title(language)} for c in candidates[:3]]

    def emergency_reply(self, language: str) -> ReplyMessage:
        """The red panel: what to do now and a tap-to-call button; no wait estimate, no callback offer."""
        return ReplyMessage(self.responses("emergency", language), kind="emergency",
                            buttons=[Button(self.responses("call_120", language), "tel:120")])

    def _handoff_replies(self, decision: Decision, language: str, position: int) -> list[ReplyMessage]:
        if decision.reason == "emergency":
            return [self.emergency_reply(language)]
        key = {"low_confidence": "handoff_after_failures", "complaint": "complaint"}.get(decision.reason or "", "handoff")
        return [ReplyMessage(self.responses(key, language, position=position))]

    def _render(self, decision: Decision, language: str) -> list[ReplyMessage]:
        talk = commands.simple_button(self.responses("talk_to_person", language), commands.ASK_HUMAN)
        if decision.action == "answer":
            entry = self.kb.entries[decision.entry_id]
            buttons = [commands.faq_button(self.kb.entries[f].title(language), f)
                       for f in entry.follow_ups if f in self.kb.entries]
            return [ReplyMessage(
                text=entry.answer.en if language == "en" else entry.answer.zh,
                buttons=buttons, source={"name": entry.source.name, "url": str(entry.source.url)},
                updated=entry.updated.isoformat(), entry_id=entry.id)]
        if decision.action == "did_you_mean":
            buttons = [commands.faq_button(self.kb.entries[e].title(language), e) for e in decision.options]
            buttons.append(commands.simple_button(self.responses("none_of_these", language), commands.NONE_OF_THESE))
            return [ReplyMessage(self.responses("did_you_mean", language), buttons=buttons)]
        if decision.action == "policy_changed":
            entry = self.kb.entries[decision.entry_id]
            text = self.responses("policy_changed", language, title=entry.title(language),
                                  valid_until=entry.valid_until.isoformat() if entry.valid_until else "")
            return [ReplyMessage(text, buttons=[talk], entry_id=entry.id)]
        if decision.action == "smalltalk":
            return [ReplyMessage(self.responses(decision.intent, language))]
        return [ReplyMessage(self.responses("rephrase", language), buttons=[talk])]


