"""``hotline-bot`` command line: serve, ask, index, kb validate, eval, agent."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from bot.config import Settings


def _cmd_kb_validate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.kb.loader import validate_knowledge_base

    problems = validate_knowledge_base(settings.knowledge_dir)
    for problem in problems:
        print(f"{problem.severity.upper()}: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {settings.knowledge_dir}", file=sys.stderr)
        return 1
    from bot.kb import load_knowledge_base

    kb = load_knowledge_base(settings.knowledge_dir)
    print(f"OK: {len(kb.entries)} entries, {len(kb.intent_examples)} intents, KB version {kb.version}")
    return 0


def _cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from bot.encoders import build_encoder
    from bot.index import artifact_dir, build_index, save_index
    from bot.kb import load_knowledge_base
    from bot.text import DomainTokenizer, SynonymMap

    started = time.perf_counter()
    kb = load_knowledge_base(settings.knowledge_dir)
    tokenizer = DomainTokenizer(kb.userdict_path, SynonymMap.from_file(kb.synonyms_path))
    index = build_index(kb, tokenizer, build_encoder(settings.encoder, settings.encoder_threads))
    directory = artifact_dir(settings.index_dir, kb.version, settings.encoder_key)
    save_index(index, directory)
    print(f"indexed {len(kb.entries)} entries / {len(index.doc_texts)} questions "
          f"in {time.perf_counter() - started:.1f}s -> {directory}")
    return 0


def _cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.engine import Bot
    from bot.store import Store

    store = Store("sqlite:///:memory:") if not args.persist else None
    if store is not None:
        store.create_schema()
    bot = Bot.from_settings(settings, store=store)
    from bot.messages import Message

    reply = bot.handle(Message(user_id="cli", text=args.question, channel="cli"))
    if args.json:
        print(json.dumps(reply.to_dict() | {"candidates": reply.candidates}, ensure_ascii=False, indent=2))
        return 0
    for message in reply.replies:
        print(message.text)
        if message.source:
            print(f"  [{message.source['name']} {message.source['url']} · {message.updated}]")
        for button in message.buttons:
            print(f"  > {button.title}   ({button.payload})")
    print(f"\nintent={reply.intent} confidence={reply.confidence:.3f} entry={reply.entry_id or '-'} "
          f"language={reply.language}" + (f" handoff={reply.handoff.reason}" if reply.handoff else ""))
    return 0


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.serve import serve

    serve(settings, host=args.host or settings.host, port=args.port or settings.port)
    return 0


def _cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from bot.config import PROJECT_ROOT

    sys.path.insert(0, str(PROJECT_ROOT))  # bench/ lives beside the package, not inside it
    from bench.eval import main as eval_main

    return eval_main(args.rest)


def _cmd_agent_create(args: argparse.Namespace, settings: Settings) -> int:
    import getpass
    import os

    from bot.desk import AgentDesk, DeskError
    from bot.store import Store

    password = args.password or os.environ.get("HOTLINE_AGENT_PASSWORD")
    if not password:
        password = getpass.getpass(f"password for {args.username}: ")
        if password != getpass.getpass("repeat password: "):
            print("passwords do not match", file=sys.stderr)
            return 1
    store = Store(settings.sqlalchemy_url)
    import bot.desk_models  # noqa: F401  (tables on Base before create_schema)
    import bot.webhooks  # noqa: F401

    store.create_schema()
    try:
        agent = AgentDesk(store).create_agent(args.username, password, args.display_name)
    except DeskError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"agent {agent.username!r} created")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline-bot", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (waitress)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_cmd_serve)

    ask = sub.add_parser("ask", help="ask one question, print answer, confidence, entry, language")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the full reply as JSON")
    ask.add_argument("--persist", action="store_true", help="record the turn in the configured database")
    ask.set_defaults(func=_cmd_ask)

    index = sub.add_parser("index", help="build or rebuild the search index")
    index.set_defaults(func=_cmd_index)

    kb = sub.add_parser("kb", help="knowledge base tools")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    validate = kb_sub.add_parser("validate", help="check every KB file; non-zero exit on problems")
    validate.set_defaults(func=_cmd_kb_validate)

    evaluate = sub.add_parser("eval", help="retrieval quality on held-out and external sets", add_help=False)
    evaluate.set_defaults(func=_cmd_eval)

    agent = sub.add_parser("agent", help="agent console accounts")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    create = agent_sub.add_parser("create", help="create an agent (password from --password, "
                                                 "HOTLINE_AGENT_PASSWORD or a prompt)")
    create.add_argument("username")
    create.add_argument("--password")
    create.add_argument("--display-name")
    create.set_defaults(func=_cmd_agent_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.command != "eval" and rest:
        build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    from bot.kb.loader import KnowledgeBaseError

    try:
        return args.func(args, Settings())
    except KnowledgeBaseError as exc:
        print(f"the knowledge base cannot be served:\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
