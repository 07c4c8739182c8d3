"""Emergency red flags: a regex floor plus a learned detector, before anything else.

Retrieval and the classifier can add an emergency but can never remove one
found here: a citizen who types 呼吸困难 gets 120 guidance whatever the KB says.
Patterns live in ``knowledge/safety.yml`` so clinicians can review them.

A regex list cannot foresee every phrasing ("我已经把药都准备好了，今晚就走"),
so ``LearnedEmergencyDetector`` adds a logistic regression on the sentence
embedding ⊕ character n-grams, trained at index time on the red-flag examples
in ``knowledge/scope/emergency_examples.yml`` (positives) against the hard
non-emergency questions there, every KB paraphrase and the non-emergency
intents. Its threshold is calibrated (``bench/calibrate.py``) for recall; its
test split is ``bench/data/emergency_test.yml``.
"""
from __future__ import annotations

from bot.yaml_files import load_yaml

import re
from pathlib import Path


from bot.intents import BinaryTextClassifier

EMERGENCY_EXAMPLES_FILE = "scope/emergency_examples.yml"

# Mental-health crises also get the national psychological assistance hotline (12356).
_MENTAL_HEALTH = re.compile(
    r"自杀|轻生|不想活|活不下去|想死|去死|结束(这一切|生命|一切)|跳(楼|河|下去)|天台|遗书|割腕|割.{0,2}手腕|伤害自己|划自己|"
    r"累赘|消失|再也不(醒|起)|撑不下去|活着(太累|没意思)|suicid|kill myself|want to die|end it all|"
    r"better off without me|goodbye letter|hurt(ing)? myself|cut (my|her|his) wrists?|never wake up|disappear|"
    r"jump off|on the roof|wants? to die|can'?t go on", re.IGNORECASE)


def crisis_kind(normalised_text: str, learned: str | None = None) -> str:
    """``mental_health`` for self-harm / suicidal intent (the regex, or the learned kind classifier
    trained on the labelled red-flag examples), otherwise ``medical``."""
    if _MENTAL_HEALTH.search(normalised_text) or learned == "mental_health":
        return "mental_health"
    return "medical"


# A message this short (CJK characters + Latin words) gives the learned detector too little to go on: after round 6
# taught it farewells, "我再想想" scored 0.15-0.30, "王阿姨" 0.64 and "never mind i found it" 0.63, over a threshold
# of 0.05-0.06. Short red flags are explicit ("I've been stabbed", "My husband drank pesticide": 1.00) or the regex
# floor's ("救命", "喘不上气"), so a short message alarms the detector alone only when it is sure.
SHORT_MESSAGE = 6
SHORT_SURE = 0.9
_CJK_CHAR = re.compile(r"[\u3400-\u9fff]")
_LATIN_WORD = re.compile(r"[a-z]+", re.IGNORECASE)


def message_size(normalised_text: str) -> int:
    """CJK characters plus Latin words: how much a message says, across scripts."""
    return len(_CJK_CHAR.findall(normalised_text)) + len(_LATIN_WORD.findall(normalised_text))


def learned_alarm(probability: float, scope: float | None, threshold: float, sure: float,
                  scope_answer: float, slope: float = 0.0, short: bool = False) -> bool:
    """Does the learned detector's P(emergency) raise a red flag?

    At or above ``threshold`` it does, except in the unsure band below ``sure`` when the scope model
    rates the question as one the KB answers directly (``scope >= scope_answer``): questions ABOUT a
    symptom, a medicine or a bedridden relative share words with red flags ("会不会吐", "降压药只剩三天"),
    and those are exactly the questions the KB answers. Calibrated (``bench/calibrate.py``) so that the
    veto loses none of the cross-validated red flags; a sure detector, or no scope model, always alarms.

    ``short``: the message is shorter than ``SHORT_MESSAGE`` (``message_size``): only a sure detector alarms.

    ``slope``: the band's top rises linearly from ``sure`` at ``scope_answer`` to ``sure + slope`` at scope 1.
    A question the KB answers with certainty needs a surer detector than one it barely answers. Round 6 (2026-12-03)
    taught the detector indirect red flags (a relative isolating at home who no longer answers), and the flat band
    low enough to keep them (0.26) let "刚吃完早饭就去捅嗓子会不会吐" (scope 0.90, P 0.30) and "being shut in so long is
    getting me down, is there anyone I can talk to" (0.89, 0.40) alarm; with the calibrated slope 0.2 they did not,
    and "我爸在家隔离，降压药只剩三天的量了" (0.99, P 0.73) still does (its top 0.46).
    """
    if probability < threshold or (short and probability < SHORT_SURE):
        return False
    if scope is None or scope < scope_answer:
        return True
    return probability >= sure + slope * (scope - scope_answer) / max(1.0 - scope_answer, 1e-9)


class EmergencyDetector:
    def __init__(self, patterns: list[str]):
        if not patterns:
            raise ValueError("the emergency safety net needs at least one pattern")
        self._patterns = [re.compile(p, re.IGNORECASE) for p in patterns]

    @classmethod
    def from_file(cls, path: Path) -> "EmergencyDetector":
        data = load_yaml(path) or {}
        return cls([str(p) for p in data.get("emergency_patterns") or []])

    def run(self, normalised_text: str) -> str | None:
        """The matched red-flag phrase, or None."""
        for pattern in self._patterns:
            match = pattern.search(normalised_text)
            if match:
                return match.group(0)
        return None


def load_emergency_examples(knowledge_dir: Path, with_kinds: bool = False) -> tuple[list[str], ...]:
    """(emergency texts, non-emergency texts[, kinds of the emergency texts]) from the training split;
    empty lists when absent."""
    path = Path(knowledge_dir) / EMERGENCY_EXAMPLES_FILE
    data = (load_yaml(path) or {}) if path.exists() else {}
    emergency = data.get("emergency") or []
    out = ([str(r["text"]) for r in emergency], [str(r["text"]) for r in data.get("not_emergency") or []])
    if with_kinds:
        return out + ([str(r.get("kind") or "medical") for r in emergency],)
    return out


class LearnedEmergencyDetector(BinaryTextClassifier):
    """P(emergency | text) from embedding ⊕ char 1–3-gram TF-IDF (see ``BinaryTextClassifier``)."""
