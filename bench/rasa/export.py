"""Export hotline-bot's KB as a Rasa 3.x project (NLU data, rules, domain, config).

The same knowledge the bot serves, in the shape a Rasa team would build it:
one retrieval intent ``faq/<entry_id>`` per KB entry whose examples are the
entry's zh + en paraphrases, answered by a ResponseSelector; the small-talk /
handoff intents of ``knowledge/intents.yml`` as plain intents answered by rules.
Pipeline: JiebaTokenizer with the KB's user dictionary, CountVectors on words
and on char_wb 1–4 n-grams, DIET, ResponseSelector (issue 13's configuration).

Runs in hotline-bot's venv (no rasa import); the files it writes are what
``rasa train`` reads in bench/rasa's own Python 3.10 venv.

    python -m bench.rasa.export OUT_DIR [--epochs 300]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from bot.config import Settings
from bot.kb import KnowledgeBase, load_knowledge_base

RETRIEVAL_INTENT = "faq"
DEFAULT_EPOCHS = 300
# knowledge/intents.yml intent -> knowledge/responses.yml key of the bot's fixed reply.
FIXED_REPLIES = {"greet": "greet", "goodbye": "goodbye", "thanks": "thanks", "ask_human": "handoff",
                 "emergency": "emergency", "complaint": "complaint", "out_of_scope": "out_of_scope", "vague": "menu"}


class _Literal(str):
    """A string dumped as a YAML ``|`` block (Rasa's ``examples: |`` convention)."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _dump(data: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10_000),
                    encoding="utf-8")


def _examples(texts: list[str]) -> _Literal:
    # One line per example; a newline inside a paraphrase would split it into two examples.
    return _Literal("".join(f"- {' '.join(text.split())}\n" for text in texts))


def _fixed_text(responses: dict, key: str) -> str:
    both = responses[key]
    # Rasa would try to fill {placeholders} from slots; the benchmark has none.
    return f"{both['zh']}\n\n{both['en']}".replace("{position}", "1")


def faq_intent(entry_id: str) -> str:
    return f"{RETRIEVAL_INTENT}/{entry_id}"


def build_project(kb: KnowledgeBase, epochs: int = DEFAULT_EPOCHS) -> dict[str, object]:
    """The Rasa project as data: {relative path: YAML document}."""
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    responses_file = yaml.safe_load((kb.root / "responses.yml").read_text(encoding="utf-8"))
    small_talk = {name: examples for name, examples in kb.intent_examples.items() if name != RETRIEVAL_INTENT}
    unknown = sorted(set(small_talk) - set(FIXED_REPLIES))
    if unknown:
        raise ValueError(f"intents.yml: no fixed reply mapped for intent(s) {unknown} (bench/rasa/export.py)")

    nlu = [{"intent": faq_intent(entry.id), "examples": _examples(entry.questions.zh + entry.questions.en)}
           for entry in kb.entries.values()]
    nlu += [{"intent": name, "examples": _examples(examples)} for name, examples in small_talk.items()]

    responses: dict[str, list[dict[str, str]]] = {}
    for entry in kb.entries.values():
        # hotline-bot answers in the citizen's language; a plain ResponseSelector has one text per
        # response, so it carries both (the length of the JSON the server sends is comparable).
        responses[f"utter_{faq_intent(entry.id)}"] = [{"text": f"{entry.answer.zh}\n\n{entry.answer.en}"}]
    for name in small_talk:
        responses[f"utter_{name}"] = [{"text": _fixed_text(responses_file, FIXED_REPLIES[name])}]

    rules = [{"rule": "answer a FAQ with the response selector",
              "steps": [{"intent": RETRIEVAL_INTENT}, {"action": f"utter_{RETRIEVAL_INTENT}"}]}]
    rules += [{"rule": f"reply to {name}", "steps": [{"intent": name}, {"action": f"utter_{name}"}]}
              for name in small_talk]

    domain = {"version": "3.1", "intents": [RETRIEVAL_INTENT, *small_talk], "responses": responses,
              "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True}}
    config = {
        "recipe": "default.v1",
        "language": "zh",
        "assistant_id": "hotline-bench",
        "pipeline": [
            {"name": "JiebaTokenizer", "dictionary_path": "dict"},
            {"name": "CountVectorsFeaturizer"},
            {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
            {"name": "DIETClassifier", "epochs": epochs},
            {"name": "ResponseSelector", "epochs": epochs, "retrieval_intent": RETRIEVAL_INTENT},
        ],
        "policies": [{"name": "RulePolicy"}],
    }
    return {
        "config.yml": config,
        "domain.yml": domain,
        "data/nlu.yml": {"version": "3.1", "nlu": nlu},
        "data/rules.yml": {"version": "3.1", "rules": rules},
    }


def export(kb: KnowledgeBase, out_dir: Path, epochs: int = DEFAULT_EPOCHS) -> Path:
    """Write the project into ``out_dir`` (created); the jieba user dictionary goes to ``dict/``
    (Rasa's JiebaTokenizer loads every file of its ``dictionary_path`` folder)."""
    out_dir = Path(out_dir)
    for relative, document in build_project(kb, epochs).items():
        _dump(document, out_dir / relative)
    (out_dir / "dict").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kb.userdict_path, out_dir / "dict" / "userdict.txt")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.rasa.export", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    args = parser.parse_args(argv)
    kb = load_knowledge_base(Settings().knowledge_dir)
    export(kb, args.out_dir, args.epochs)
    print(f"exported {len(kb.entries)} retrieval intents + {len(kb.intent_examples)} intents "
          f"(epochs {args.epochs}) -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
