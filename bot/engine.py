"""The bot as one plain object: ``Bot.handle(Message) -> Reply``.

Connectors, the CLI and tests all call this; it knows nothing of HTTP.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bot import commands
from bot.config import Settings, Thresholds
from bot.conversations.service import ConversationError, ConversationRecord, MessageScope, StoredTurn
from bot.conversations.privacy import mask_names
from bot.conversations.status import ENDED, WITH_PERSON
from bot.encoders import Encoder, build_encoder, encode
from bot.index import SearchIndex, load_or_build_index
from bot.intents import FAQ_INTENT, IntentPrediction
from bot.kb import Entry, KnowledgeBase, load_knowledge_base
from bot.kb.inbox import paraphrase_text
from bot.kb.schema import Contact
from bot.kb.schema import expand_contacts
from bot.messages import Button, HandoffInfo, Message, Reply, ReplyMessage
from bot.models import utcnow
from bot.policy import KEEPS_FAILURES, MENTAL_HEALTH, Decision, DecisionPolicy
from bot.regions import NATIONWIDE, Gazetteer
from bot.responses import Responses
from bot.retrieval import Candidate, HybridRetriever, KnownQuestions
from bot.safety import SHORT_MESSAGE, EmergencyDetector, crisis_kind, learned_alarm, message_size
from bot.scope import RULE_CATEGORIES, OtherSubjects, ScopeEvidence, ScopeModel, scope_evidence
from bot.topics import TopicOpeners
from bot.text import (
    DomainTokenizer,
    Language,
    SynonymMap,
    detect_language,
    detect_script,
    normalise,
    reply_language,
    to_script,
)

if TYPE_CHECKING:
    from bot.conversations.service import ConversationService

log = logging.getLogger(__name__)

# A question for a phone number of the epidemic hotline (answered from the contact directory).
_ASKS_NUMBER = re.compile(r"(热线|hotline|(电话|号码|phone number|telephone).*(防疫|疫情|卫健|12345|12320|epidemic|covid)"
                          r"|(防疫|疫情|卫健|epidemic|covid).*(电话|号码|phone number|telephone))")


@dataclass(frozen=True)
class Understanding:
    """Everything the bot learned from one text, before any decision."""

    normalised: str
    language: Language
    emergency: str | None
    intent: IntentPrediction
    candidates: list[Candidate]
    script: str | None = None  # hans | hant, from the raw text; None when it does not tell
    region: str | None = None  # the place whose rules apply (gazetteer name), if the text names one
    scope: float | None = None  # P(top entry answers it), None without a scope model
    evidence: ScopeEvidence | None = None
    emergency_probability: float = 0.0  # the learned detector's
    crisis_kind: str | None = None  # medical | mental_health, when an emergency
    aspect: str | None = None  # cause, remedy, cost, where...
    other_subjects: tuple[str, ...] = ()  # other vaccines/diseases named in the text that the top entry never mentions
    topic: str | None = None  # the KB category the text names and nothing else ("疫苗", "我想问一下核酸的事")


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
        self.retriever = _retriever(index, thresholds, covers=kb.covers)
        self.safety = EmergencyDetector.from_file(kb.safety_path)
        self.gazetteer = Gazetteer.from_file(kb.regions_path)
        self.scope_model = None
        if thresholds.scope_coef:
            try:
                self.scope_model = ScopeModel(thresholds.scope_coef, thresholds.scope_intercept)
            except ValueError as exc:  # thresholds from an older calibration: decide on plain scores
                log.warning("scope model disabled: %s; run python -m bench.calibrate", exc)
        self.policy = DecisionPolicy(kb, thresholds, settings.max_failures_before_handoff, self.gazetteer)
        self.other_subjects = OtherSubjects.from_dir(kb.root, self.tokenizer.frequency)
        self.topics = TopicOpeners.from_dir(kb.root)
        self.entry_texts = entry_texts(kb)
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
        tokenizer = DomainTokenizer(kb.userdict_path, SynonymMap.from_file(kb.synonyms_path), settings.models_dir)
        encoder = build_encoder(settings.encoder, settings.encoder_threads, settings.models_dir)
        index = load_or_build_index(kb, tokenizer, encoder, settings.index_dir, settings.encoder_key)
        return cls(settings, kb, tokenizer, encoder, index)

    def with_knowledge(self, kb: KnowledgeBase, index: SearchIndex) -> "Bot":
        """A new Bot serving another KB version over the same models and conversation store.

        Why a new object: a request holds one Bot from start to end, so swapping
        ``services.bot`` (one reference assignment) never mixes two versions in one answer."""
        if kb.root.joinpath("responses.yml").read_bytes() != self.kb.root.joinpath("responses.yml").read_bytes():
            bot = Bot(self.settings, kb, self.tokenizer, self.encoder, index, self.conversations, self.clock)
            bot._vectors, bot._warm = self._vectors, self._warm
            return bot
        # Safety patterns, gazetteer and fixed replies come from files a publish does not change
        # (only FAQ entries are edited): reuse them (the gazetteer alone takes ~0.9 s to parse).
        bot = copy.copy(self)  # shares the query-vector cache: vectors do not depend on the KB
        thresholds = self.settings.thresholds
        bot.kb, bot.index = kb, index
        bot.retriever = _retriever(index, thresholds, self.retriever.known, kb.covers)
        bot.policy = DecisionPolicy(kb, thresholds, self.settings.max_failures_before_handoff, self.gazetteer)
        return bot

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
        words = self.tokenizer.words(normalised)
        tokens = self.tokenizer.tokens(normalised, words)
        candidates = self.retriever.run(tokens, vector, top_k=top_k, text=normalised)
        language = detect_language(normalised)
        evidence = scope = None
        if self.scope_model is not None:
            in_kb = self.index.topic.probability(normalised, vector) if self.index.topic is not None else 1.0
            evidence = scope_evidence(candidates, words, self.index.vocabulary, language, in_kb, self.gazetteer.get)
            scope = self.scope_model.probability(evidence)
        t = self.settings.thresholds
        emergency = self.safety.run(normalised)
        probability = self.index.emergency.probability(normalised, vector)
        if emergency is None and learned_alarm(probability, scope, t.emergency, t.emergency_sure, t.scope_answer,
                                                   t.emergency_sure_slope, message_size(normalised) < SHORT_MESSAGE):
            emergency = f"learned:{probability:.2f}"
        aspect = None
        if self.index.aspects is not None:
            prediction = self.index.aspects.run(normalised, vector)
            aspect = prediction.intent if prediction.confidence >= 0.5 else None
        region = self.gazetteer.relevant(normalised)
        other: tuple[str, ...] = ()
        if candidates:
            top = self.kb.entries.get(candidates[0].entry_id)
            other = self.other_subjects.find(normalised, self.entry_texts.get(candidates[0].entry_id, ""),
                                             rules_entry=top is not None and top.category in RULE_CATEGORIES,
                                             words=words)
        return Understanding(
            normalised=normalised,
            language=language,
            emergency=emergency,
            intent=self.index.intents.run(normalised, vector),
            candidates=candidates,
            script=detect_script(text),
            region=region.name if region else None,
            scope=scope,
            evidence=evidence,
            emergency_probability=probability,
            crisis_kind=self._crisis_kind(normalised, vector) if emergency else None,
            aspect=aspect,
            other_subjects=other,
            topic=self.topics.find(normalised),
        )

    def _crisis_kind(self, normalised: str, vector: np.ndarray) -> str:
        learned = None
        if self.index.crisis_kinds is not None:
            prediction = self.index.crisis_kinds.run(normalised, vector)
            learned = prediction.intent if prediction.confidence >= 0.5 else None
        return crisis_kind(normalised, learned)

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
            if understanding and understanding.script:
                conv.script = understanding.script
            if understanding and understanding.region:
                conv.region = understanding.region
            language = conv.language
            scope.add_turn("user", message.text, payload={"command": command.name} if command else None,
                           client_message_id=message.client_message_id)
            if conv.status in WITH_PERSON:
                return self._while_handed_off(scope, understanding, language)
            if conv.status in ENDED:
                scope.resume()
            decision = self._resume_pending(conv, command, understanding, today)
            if decision is None:
                decision = self._decide(conv, command, understanding, today)
            conv.pending = {"entry": decision.entry_id} if decision.action == "ask_region" else None
            if understanding and decision.intent == FAQ_INTENT and understanding.candidates:
                conv.last_candidates = self._top3(understanding.candidates, language)
            return self._act(scope, decision, language)

    def _directory_contact(self, understanding: Understanding, region: str | None) -> Contact | None:
        """"北京防疫热线是多少": the hotline of the region named in the text (or the conversation's),
        from the contact directory, so a number changed there is right everywhere at once."""
        if understanding.emergency or not self.kb.contacts or not _ASKS_NUMBER.search(understanding.normalised):
            return None
        place = self.gazetteer.get(understanding.region or region)
        if place is None:
            return None
        hotlines = [c for c in self.kb.contacts.values() if c.kind == "hotline" and c.region]
        for wanted in (place.name, place.province):
            found = next((c for c in hotlines if c.region == wanted), None)
            if found is not None:
                return found
        return None

    def _replayed(self, scope: MessageScope, turns: list[StoredTurn]) -> Reply:
        conv = scope.conversation
        first = turns[0] if turns else None
        return Reply(conversation_id=conv.id, replies=[ReplyMessage.from_dict(t.payload, t.text) for t in turns],
                     intent=(first.intent or "replay") if first else "replay", confidence=first.score or 0.0 if first else 0.0,
                     language=conv.language, entry_id=first.entry_id if first else None,
                     candidates=list(conv.last_candidates or []), handoff=scope.handoff_info(),
                     status=str(conv.status), turn_ids=[t.id for t in turns], replayed=True, region=conv.region)

    def _resume_pending(self, conv: ConversationRecord, command: commands.Command | None,
                        understanding: Understanding | None, today: dt.date) -> Decision | None:
        """The bot asked "which city?" for an entry with regional variants: a region button, or a
        text naming a place, answers that entry now. Anything else is a new question."""
        pending = (conv.pending or {}).get("entry")
        if not pending or self.kb.get(pending) is None:
            return None
        region = None
        if command is not None and command.name == commands.REGION:
            region = self._region_of(command)
        elif understanding is not None and understanding.region:
            region = understanding.region
        if region is None:
            return None
        conv.region = region
        return self.policy.answer(pending, 1.0, today, region)

    def _region_of(self, command: commands.Command) -> str:
        """A region button's region (gazetteer name), or 全国 for "elsewhere / nationwide"."""
        found = self.gazetteer.get(str(command.args.get("name") or ""))
        return found.name if found else NATIONWIDE

    def _decide(self, conv: ConversationRecord, command: commands.Command | None,
                understanding: Understanding | None, today: dt.date) -> Decision:
        if command is not None:
            if command.name == commands.FAQ and self.kb.get(str(command.args.get("entry"))):
                return self.policy.answer(str(command.args["entry"]), 1.0, today, conv.region)
            if command.name == commands.TOPIC:
                return self.policy.topic(str(command.args.get("category") or ""))
            if command.name == commands.REGION:  # a region button under an answer: that entry, for there
                conv.region = self._region_of(command)
                entry_id = str(command.args.get("entry") or "")
                if self.kb.get(entry_id):
                    return self.policy.answer(entry_id, 1.0, today, conv.region)
                return self.policy.menu()
            if command.name == commands.ASK_HUMAN:
                return Decision("handoff", "ask_human", 1.0, reason="user_request")
            if command.name in {"greet", "goodbye", "thanks"}:
                return Decision("smalltalk", command.name, 1.0)
            return self.policy.failure(0.0, conv.failures)  # none_of_these, unknown payloads
        assert understanding is not None
        contact = self._directory_contact(understanding, conv.region)
        if contact is not None:
            return Decision("contact", "contact", 1.0, options=[contact.id], region=contact.region)
        return self.decision_for(understanding, today, conv.failures, conv.region)

    def decision_for(self, understanding: Understanding, today: dt.date, failures: int = 0,
                     region: str | None = None) -> Decision:
        """The policy's decision on what was understood: one call for a conversation, ``hotline-bot eval`` and the
        KB editor's test box (the test box passed neither the other subjects nor the topic, and previewed "疫苗"
        as answered with testing.after_vaccination while citizens got the vaccination questions)."""
        return self.policy.run(emergency=understanding.emergency, intent=understanding.intent,
                               candidates=understanding.candidates, failures=failures, today=today,
                               scope=understanding.scope, aspect=understanding.aspect, region=region,
                               crisis_kind=understanding.crisis_kind, other_subjects=understanding.other_subjects,
                               topic=understanding.topic)

    def _act(self, scope: MessageScope, decision: Decision, language: str) -> Reply:
        conv = scope.conversation
        if decision.counts_as_failure:
            conv.failures += 1
        elif decision.action not in KEEPS_FAILURES:
            conv.failures = 0
        handoff_info = None
        if decision.action == "handoff":
            # "转人工" is not the question: the agent should see what the citizen asked before it.
            handoff_info = scope.open_handoff(decision.reason or "user_request", urgent=decision.urgent,
                                              candidates=list(conv.last_candidates or []),
                                              kb_version=self.kb.version,
                                              skip_current=decision.reason == "user_request")
            conv.failures = 0
            if handoff_info is None:  # already waiting for a person in another conversation
                replies = ([self._emergency_reply(decision.crisis_kind, language, conv.script)]
                           if decision.reason == "emergency" else [])
                replies.append(_in_script(ReplyMessage(self.responses("already_waiting", language)), language,
                                          conv.script))
            else:
                replies = self._handoff_replies(decision, language, handoff_info.queue_position or 1, conv.script)
        else:
            replies = self._render(decision, language, conv.script)
        reply = self._record_replies(scope, replies, decision.intent, decision.confidence, decision.entry_id,
                                     decision.action, language, handoff_info, decision.region or conv.region)
        return dataclasses.replace(reply, handoff_opened=handoff_info is not None)

    def _record_replies(self, scope: MessageScope, replies: list[ReplyMessage], intent: str, confidence: float,
                        entry_id: str | None, action: str, language: str,
                        handoff_info: HandoffInfo | None, region: str | None = None) -> Reply:
        user_seq = scope.conversation.turn_count
        for reply in replies:
            scope.add_turn("bot", reply.text, intent=intent, entry_id=entry_id, score=round(confidence, 4),
                           payload={k: v for k, v in reply.to_dict().items() if k != "text"}
                           | {"action": action, "kb_version": self.kb.version, "reply_to_seq": user_seq}
                           | ({"region": region} if region else {}))
        scope.flush()
        conv = scope.conversation
        return Reply(conversation_id=conv.id, replies=replies, intent=intent, confidence=confidence,
                     language=language, entry_id=entry_id, candidates=list(conv.last_candidates or []),
                     handoff=handoff_info, status=str(conv.status),
                     turn_ids=[t.id for t in scope.turns if t.role == "bot"], region=region, action=action)

    def _while_handed_off(self, scope: MessageScope, understanding: Understanding | None, language: str) -> Reply:
        """A person owns the conversation: record, never answer over the agent — except a red
        flag, which always gets the emergency screen and alerts the agents again."""
        handoff = scope.handoff_info()
        emergency = understanding is not None and self._is_emergency(understanding)
        replies: list[ReplyMessage] = []
        if emergency and understanding is not None:
            handoff = scope.escalate()
            replies.append(self._emergency_reply(understanding.crisis_kind, language, scope.conversation.script))
        elif handoff is not None and handoff.status == "waiting":
            replies.append(_in_script(ReplyMessage(self.responses("handoff_waiting", language,
                                                                  position=handoff.queue_position or 1)),
                                      language, scope.conversation.script))
        intent = "emergency" if emergency else (understanding.intent.intent if understanding else "command")
        return self._record_replies(scope, replies, intent, 1.0, None, "handoff_wait", language, handoff,
                                    scope.conversation.region)

    def _is_emergency(self, understanding: Understanding) -> bool:
        t = self.settings.thresholds
        return bool(understanding.emergency) or (understanding.intent.intent == "emergency"
                                                 and understanding.intent.confidence >= t.intent)

    # -- rendering ---------------------------------------------------------------

    def _top3(self, candidates: list[Candidate], language: str) -> list[dict[str, Any]]:
        return [{"entry_id": c.entry_id, "score": round(c.score, 4),
                 "title": self.kb.entries[c.entry_id].title(language)} for c in candidates[:3]]

    def _emergency_reply(self, kind: str | None, language: str, script: str | None) -> ReplyMessage:
        """The red panel: what to do now and tap-to-call buttons — 120 always; mental-health crises
        also the 12356 psychological assistance hotline. No wait estimate, no callback offer.
        Channels that cannot dial show the number (it is in the text)."""
        key = "emergency_mental_health" if kind == MENTAL_HEALTH else "emergency"
        buttons = [Button(self.responses("call_120", language), "tel:120")]
        if kind == MENTAL_HEALTH:
            buttons.append(Button(self.responses("call_12356", language), "tel:12356"))
        return _in_script(ReplyMessage(self.responses(key, language), buttons=buttons, kind="emergency"),
                          language, script)

    def _handoff_replies(self, decision: Decision, language: str, position: int,
                         script: str | None = None) -> list[ReplyMessage]:
        if decision.reason == "emergency":
            return [self._emergency_reply(decision.crisis_kind, language, script)]
        key = {"low_confidence": "handoff_after_failures", "complaint": "complaint"}.get(decision.reason or "", "handoff")
        return [_in_script(ReplyMessage(self.responses(key, language, position=position)), language, script)]

    def _render(self, decision: Decision, language: str, script: str | None = None) -> list[ReplyMessage]:
        return [_in_script(m, language, script) for m in self._render_simplified(decision, language)]

    def _entry_of(self, decision: Decision) -> Entry:
        if decision.entry_id is None:
            raise ValueError(f"a {decision.action!r} decision without an entry")
        return self.kb.entries[decision.entry_id]

    def _render_simplified(self, decision: Decision, language: str) -> list[ReplyMessage]:
        talk = commands.simple_button(self.responses("talk_to_person", language), commands.ASK_HUMAN)
        if decision.action == "answer":
            entry = self._entry_of(decision)
            variant = entry.variant(decision.variant)
            answer, source = (variant.answer, variant.source or entry.source) if variant else (entry.answer, entry.source)
            updated = (variant.updated if variant and variant.updated else entry.updated)
            follow = [f for f in [*decision.also, *entry.follow_ups] if f in self.kb.entries and f != entry.id]
            buttons = [commands.faq_button(self.kb.entries[f].title(language), f) for f in dict.fromkeys(follow)]
            text = expand_contacts(answer.en if language == "en" else answer.zh, self.kb.contacts, language)
            if entry.variants and not variant:
                where = self.responses("variant_default", language)
                buttons += [commands.region_button(self._region_title(r, language), r, entry.id)
                            for r in entry.variant_regions]
                text = f"{text}\n\n{where}"
            return [ReplyMessage(
                text=text, buttons=buttons,
                source={"name": source.title(language), "url": str(source.url)},
                updated=updated.isoformat(), entry_id=entry.id)]
        if decision.action == "contact":
            contact = self.kb.contacts[decision.options[0]]
            return [ReplyMessage(text=contact.render(language),
                                 source={"name": contact.name_en if language == "en" else contact.name,
                                         "url": str(contact.source)} if contact.source else None,
                                 updated=contact.last_verified.isoformat())]
        if decision.action == "ask_region":
            entry = self._entry_of(decision)
            buttons = [commands.region_button(self._region_title(r, language), r) for r in decision.options]
            buttons.append(commands.region_button(self.responses("region_elsewhere", language), NATIONWIDE))
            return [ReplyMessage(self.responses("ask_region", language, title=entry.title(language)),
                                 buttons=buttons, entry_id=entry.id)]
        if decision.action == "menu":
            buttons = [commands.topic_button(self._topic_title(c, language), c) for c in decision.options]
            return [ReplyMessage(self.responses("menu", language), buttons=buttons)]
        if decision.action in ("did_you_mean", "topic"):  # a topic: its questions, as options
            buttons = [commands.faq_button(self.kb.entries[e].title(language), e) for e in decision.options]
            buttons.append(commands.simple_button(self.responses("none_of_these", language), commands.NONE_OF_THESE))
            if decision.action == "topic" and decision.options:  # the citizen chose the topic: nothing to guess
                category = self.kb.entries[decision.options[0]].category
                text = self.responses("topic_questions", language, topic=self._topic_title(category, language))
                return [ReplyMessage(text, buttons=buttons)]
            return [ReplyMessage(self.responses("did_you_mean", language), buttons=buttons)]
        if decision.action == "policy_changed":
            entry = self._entry_of(decision)
            text = self.responses("policy_changed", language, title=entry.title(language),
                                  valid_until=entry.valid_until.isoformat() if entry.valid_until else "")
            return [ReplyMessage(text, buttons=[talk], entry_id=entry.id)]
        if decision.action == "smalltalk":
            return [ReplyMessage(self.responses(decision.intent, language))]
        if decision.action == "not_covered":
            return [ReplyMessage(self.responses("not_covered", language), buttons=[talk])]
        return [ReplyMessage(self.responses("rephrase", language), buttons=[talk])]

    def _topic_title(self, category: str, language: str) -> str:
        return self.responses.get(f"topic_{category}", language, category)

    def _region_title(self, name: str, language: str) -> str:
        region = self.gazetteer.get(name)
        return region.title(language) if region else name


def _retriever(index: SearchIndex, thresholds: Thresholds, known: KnownQuestions | None = None,
               covers: dict[str, frozenset[str]] | None = None) -> HybridRetriever:
    """``known``: the serving version's paraphrase lookup, reused when ``index`` kept its documents.
    ``covers``: the KB's general entries; a near-tie (``margin``) with an entry one covers goes to that entry."""
    if known is None or known.doc_texts is not index.doc_texts or known.doc_entry_ids is not index.doc_entry_ids:
        known = KnownQuestions(index.doc_entry_ids, index.doc_texts, strip=without_personal_data)
    return HybridRetriever(index.doc_entry_ids, index.lexical, index.dense, thresholds.dense_weight,
                           thresholds.lexical_saturation, lexical_entry_ids=index.lexical_entry_ids,
                           classifier=index.entries, classifier_weight=thresholds.classifier_weight, known=known,
                           covers=covers, tie=thresholds.margin)


_NOT_A_WORD_CHAR = re.compile(r"[\W_]")


def without_personal_data(normalised: str) -> str:
    """The question as the KB inbox would add it as a paraphrase: names and numbers masked, then the clauses
    holding them dropped (``bot.kb.inbox.paraphrase_text``); the question itself when it holds none, or when
    what is left is too short to be a question of its own ("我的手机号139…收不到验证码，怎么办" leaves "怎么办":
    had an editor accepted that from the inbox, every "<a clause with a number>，怎么办" would be known)."""
    masked = mask_names(normalised)  # numbers too: mask_names applies mask
    if masked == normalised:
        return normalised
    stripped = normalise(paraphrase_text(masked))
    return stripped if len(_NOT_A_WORD_CHAR.sub("", stripped)) >= 6 else normalised


def entry_texts(kb: KnowledgeBase) -> dict[str, str]:
    """Each entry's own words (questions, answers, regional variants), normalised: what an entry talks about."""
    out = {}
    for e in kb.entries.values():
        parts = [*e.questions.zh, *e.questions.en, e.answer.zh, e.answer.en]
        for v in e.variants:
            parts += [v.answer.zh, v.answer.en]
        out[e.id] = normalise("\n".join(parts))
    return out


def _in_script(message: ReplyMessage, language: str, script: str | None) -> ReplyMessage:
    """Traditional in, Traditional out: the text, the button titles and the source name (not payloads)."""
    if language == "en" or script != "hant":
        return message
    from dataclasses import replace

    return replace(
        message, text=to_script(message.text, script),
        buttons=[Button(to_script(b.title, script), b.payload) for b in message.buttons],
        source={**message.source, "name": to_script(message.source["name"], script)} if message.source else None)


