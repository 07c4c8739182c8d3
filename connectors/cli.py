"""``hotline-bot``: the command line, and the application's composition root.

serve · ask · index · kb validate|export|import · eval · db upgrade · agent create|disable|enable|
reset-password|list · purge · forget · init. Each command builds what it needs from
one Settings; nothing below this module reads the environment.
"""
from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from bot.config import Settings
from bot.errors import ConversationError, SchemaError, StoreUnavailable


def _iso_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _cmd_kb_validate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.kb.loader import inspect_knowledge_base

    kb, problems = inspect_knowledge_base(settings.knowledge_dir, args.today, settings.kb.contact_stale_days)
    for problem in problems:
        print(f"{problem.severity.upper()}: {problem}", file=sys.stderr)
    errors = [p for p in problems if p.severity != "warning"]
    if errors:
        print(f"{len(errors)} problem(s) in {settings.knowledge_dir}", file=sys.stderr)
        return 1
    assert kb is not None  # no error-severity problem
    print(f"OK: {len(kb.entries)} entries, {len(kb.intent_examples)} intents, KB version {kb.version}"
          + (f" ({len(problems)} warning(s))" if problems else ""))
    return 0


def _kb_store(settings: Settings):
    from bot.kb.store import KnowledgeStore

    db = _database(settings)
    db.upgrade()
    return KnowledgeStore(db, settings.knowledge_dir, settings.kb_work_dir)


def _cmd_kb_export(args: argparse.Namespace, settings: Settings) -> int:
    """The database KB as a KB directory (canonical YAML): git-based teams keep their workflow."""
    store = _kb_store(settings)
    if store.latest() is None:
        print("the database holds no KB yet (run `hotline-bot kb import DIR` or serve with HOTLINE_KB__EDITING=1)",
              file=sys.stderr)
        return 1
    target = store.export(Path(args.directory), draft=args.drafts)
    print(f"exported {'live + drafts' if args.drafts else 'live'} KB version {store.latest().version} to {target}")
    return 0


def _cmd_kb_import(args: argparse.Namespace, settings: Settings) -> int:
    """A KB directory into the database as a new published version (running servers follow)."""
    from bot.kb.live import CHANNEL

    store = _kb_store(settings)
    publication = store.import_dir(Path(args.directory), actor=args.actor)
    if settings.redis_url:
        try:
            import redis

            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1).publish(CHANNEL, str(publication.id))
        except Exception as exc:  # noqa: BLE001 - servers still catch up on their next request
            print(f"warning: no Redis bump ({exc})", file=sys.stderr)
    print(f"imported {args.directory}: KB version {publication.version}, {len(publication.entries)} entries changed")
    return 0


def _cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from bot.encoders import build_encoder
    from bot.index import artifact_dir, build_index, save_index
    from bot.kb import load_knowledge_base
    from bot.text import DomainTokenizer, SynonymMap

    from tqdm import tqdm

    started = time.perf_counter()
    kb = load_knowledge_base(settings.knowledge_dir)
    tokenizer = DomainTokenizer(kb.userdict_path, SynonymMap.from_file(kb.synonyms_path), settings.models_dir)
    with tqdm(unit="text", desc="encoding", disable=None) as bar:  # disable=None: no bar when not a terminal
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        index = build_index(kb, tokenizer, build_encoder(settings.encoder, args.threads or os.cpu_count() or 1,
                                                         settings.models_dir), progress=progress)
    directory = artifact_dir(settings.index_dir, kb.version, settings.encoder_key)
    save_index(index, directory)
    print(f"indexed {len(kb.entries)} entries / {len(index.doc_texts)} questions "
          f"in {time.perf_counter() - started:.1f}s -> {directory}")
    return 0


def _cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import Database
    from bot.messages import Message
    from bot.services import Services

    db = None if args.persist else Database("sqlite:///:memory:")
    services = Services.build(settings, db=db)
    try:
        reply = services.bot.handle(Message(user_id="cli", text=args.question, channel="cli"))
    finally:
        services.close()
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

    if args.workers is not None:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update={"workers": args.workers})})
    serve(settings, host=args.host or settings.server.host, port=args.port or settings.server.port)
    return 0


def _cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from bench.eval import main as eval_main

    return eval_main(args.rest)


def _database(settings: Settings):
    from bot.db import Database

    return Database(settings.sqlalchemy_url, connect_timeout=settings.db.connect_timeout,
                    statement_timeout=settings.db.statement_timeout)


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    db = _database(settings)
    db.upgrade(args.revision)
    print(f"database at revision {db.current_revision()}")
    return 0


def _staff(settings: Settings):
    from bot.conversations.staff import StaffDirectory

    db = _database(settings)
    db.upgrade()
    return StaffDirectory(db, settings.limits, settings.session_hours)


def _password(args: argparse.Namespace, prompt_for: str) -> str | None:
    password = args.password or os.environ.get("HOTLINE_AGENT_PASSWORD")  # scripts: not in the shell history
    if password:
        return password
    password = getpass.getpass(f"password for {prompt_for}: ")
    if password != getpass.getpass("repeat password: "):
        print("passwords do not match", file=sys.stderr)
        return None
    return password


def _cmd_agent_create(args: argparse.Namespace, settings: Settings) -> int:
    password = _password(args, args.username)
    if password is None:
        return 1
    member = _staff(settings).create(args.username, password, args.display_name, args.role)
    print(f"{member.role} {member.username!r} created")
    return 0


def _cmd_agent_disable(args: argparse.Namespace, settings: Settings) -> int:
    _staff(settings).disable(args.username)
    print(f"{args.username!r} disabled; every session ended")
    return 0


def _cmd_agent_enable(args: argparse.Namespace, settings: Settings) -> int:
    _staff(settings).enable(args.username)
    print(f"{args.username!r} enabled")
    return 0


def _cmd_agent_reset(args: argparse.Namespace, settings: Settings) -> int:
    password = _password(args, args.username)
    if password is None:
        return 1
    _staff(settings).reset_password(args.username, password)
    print(f"password of {args.username!r} reset; every session ended")
    return 0


def _cmd_agent_list(args: argparse.Namespace, settings: Settings) -> int:
    for account in _staff(settings).list():
        flags = [f for f in ("disabled", "locked", "on_duty") if account[f]]
        print(f"{account['username']:<24} {account['role']:<11} {account['display_name']}"
              + (f"  [{', '.join(flags)}]" if flags else ""))
    return 0


def _vault(settings: Settings):
    from bot.config import keep_secret
    from bot.conversations.privacy import Vault

    return Vault(settings.privacy.key or keep_secret(settings.data_file("privacy.key"), Vault.new_key))


def _retention_days(raw: str) -> int:
    """``--days -5`` meant "older than five days from now": every conversation (and 0 fell back to 90)."""
    try:
        days = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {raw!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError("at least 1 day (0 or less would delete everything)")
    return days


def _cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from bot.conversations.retention import purge

    db = _database(settings)
    db.upgrade()
    counts = purge(db, args.days if args.days is not None else settings.privacy.retention_days)
    print("purged: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    from bot.conversations.retention import forget

    if not args.user and not args.phone:
        print("give --user CHANNEL:ID and/or --phone NUMBER", file=sys.stderr)
        return 2
    channel = external = None
    if args.user:
        channel, _, external = args.user.partition(":")
        if not channel or not external:
            print("--user must look like web:a:<widget id>, api:<user id>, rasa:<sender> or "
                  "wechat:<account>:<openid>", file=sys.stderr)
            return 2
    db = _database(settings)
    db.upgrade()
    counts = forget(db, _vault(settings), channel, external, args.phone)
    print("deleted: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    """A starter project for a hotline's own content: a copy of the default KB and a hotline.env."""
    from bot.config import default_knowledge_dir

    target = Path(args.directory)
    knowledge = target / "knowledge"
    if knowledge.exists():
        print(f"{knowledge} exists; not overwriting", file=sys.stderr)
        return 1
    shutil.copytree(default_knowledge_dir(), knowledge, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    env = target / "hotline.env"
    if not env.exists():
        env.write_text(
            f"# hotline-bot settings (see README: Configuration)\n"
            f"HOTLINE_KNOWLEDGE_DIR={knowledge.resolve()}\n"
            f"HOTLINE_DATA_DIR={(target / 'var').resolve()}\n"
            f"# DATABASE_URL=postgresql://user@host/db\n# HOTLINE_REDIS_URL=redis://127.0.0.1:6379/0\n",
            encoding="utf-8")
    print(f"wrote {knowledge} and {env}; run commands from {target} (hotline.env is read from the working folder)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline-bot", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (gunicorn + uvicorn workers)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    serve.set_defaults(func=_cmd_serve)

    ask = sub.add_parser("ask", help="ask one question, print answer, confidence, entry, language")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the full reply as JSON")
    ask.add_argument("--persist", action="store_true", help="record the turn in the configured database")
    ask.set_defaults(func=_cmd_ask)

    index = sub.add_parser("index", help="build or rebuild the search index")
    index.add_argument("--threads", type=int, help="BLAS threads for encoding (default: all cores)")
    index.set_defaults(func=_cmd_index)

    kb = sub.add_parser("kb", help="knowledge base tools")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    validate = kb_sub.add_parser("validate", help="check every KB file; non-zero exit on problems")
    validate.add_argument("--today", type=_iso_date, default=None, metavar="YYYY-MM-DD",
                          help="check expiry as of this date (default: today), e.g. what expires by Friday")
    validate.set_defaults(func=_cmd_kb_validate)
    export = kb_sub.add_parser("export", help="write the database KB to DIRECTORY as YAML (canonical form)")
    export.add_argument("directory")
    export.add_argument("--drafts", action="store_true", help="live entries with the pending drafts applied")
    export.set_defaults(func=_cmd_kb_export)
    kb_import = kb_sub.add_parser("import", help="publish the KB directory DIRECTORY into the database")
    kb_import.add_argument("directory")
    kb_import.add_argument("--actor", default="cli", help="name written to the audit log")
    kb_import.set_defaults(func=_cmd_kb_import)

    evaluate = sub.add_parser("eval", help="retrieval quality on held-out and external sets", add_help=False)
    evaluate.set_defaults(func=_cmd_eval)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations (serve does this at start)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=_cmd_db_upgrade)

    agent = sub.add_parser("agent", help="staff accounts")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    create = agent_sub.add_parser("create", help="create an account (password from --password, "
                                                 "HOTLINE_AGENT_PASSWORD or a prompt)")
    create.add_argument("username")
    create.add_argument("--password")
    create.add_argument("--display-name")
    create.add_argument("--role", default="agent", choices=["agent", "editor", "supervisor", "admin"])
    create.set_defaults(func=_cmd_agent_create)
    for name, func, text in (("disable", _cmd_agent_disable, "block logins and end every session"),
                             ("enable", _cmd_agent_enable, "allow logins again")):
        p = agent_sub.add_parser(name, help=text)
        p.add_argument("username")
        p.set_defaults(func=func)
    reset = agent_sub.add_parser("reset-password", help="set a new password and end every session")
    reset.add_argument("username")
    reset.add_argument("--password")
    reset.set_defaults(func=_cmd_agent_reset)
    agent_sub.add_parser("list", help="list accounts").set_defaults(func=_cmd_agent_list)

    purge = sub.add_parser("purge", help="delete data older than the retention period")
    purge.add_argument("--days", type=_retention_days, help="override HOTLINE_PRIVACY__RETENTION_DAYS (at least 1)")
    purge.set_defaults(func=_cmd_purge)
    forget = sub.add_parser("forget", help="delete everything of one citizen (PIPL)")
    forget.add_argument("--user", help="CHANNEL:ID, e.g. wechat:main:o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
    forget.add_argument("--phone", help="delete every callback request of this number")
    forget.set_defaults(func=_cmd_forget)

    init = sub.add_parser("init", help="write a starter project (KB copy + hotline.env) into DIRECTORY")
    init.add_argument("directory")
    init.set_defaults(func=_cmd_init)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.command != "eval" and rest:
        build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("faiss.loader", "alembic", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from bot.kb.loader import KnowledgeBaseError

    try:
        return args.func(args, Settings())
    except KnowledgeBaseError as exc:
        print(f"the knowledge base cannot be served:\n{exc}", file=sys.stderr)
        return 2
    except ConversationError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    except (StoreUnavailable, SchemaError) as exc:
        print(str(exc), file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
