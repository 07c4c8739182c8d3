"""Flask application factory: one app, one Bot, every channel as a blueprint."""
from __future__ import annotations

from flask import Flask, jsonify

from bot.config import Settings
from connectors.errors import register_error_handlers

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, bot=None) -> Flask:
    """``bot`` may be passed in (tests, several apps sharing one index); otherwise built from settings."""
    settings = settings or Settings()
    if bot is None:
        from bot.engine import Bot

        bot = Bot.from_settings(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["hotline_bot"] = bot
    app.extensions["hotline_settings"] = settings

    from connectors.api import api
    from connectors.rasa_rest import rasa_rest

    app.register_blueprint(api)
    app.register_blueprint(rasa_rest)
    from connectors.wechat import init_wechat

    init_wechat(app)  # blueprint, tables, send-API outbox worker, sender for agent replies
    from connectors.agents import register as register_agents
    from connectors.web import register as register_web

    register_web(app)  # also creates the desk tables (bot.store.create_schema) and the webhook worker
    register_agents(app)
    register_error_handlers(app)

    @app.get("/healthz")
    def healthz():
        db_ok = bot.store.ping()
        body = {"status": "ok" if db_ok else "degraded", "database": db_ok,
                "kb_version": bot.kb.version, "entries": len(bot.kb.entries)}
        return jsonify(body), 200 if db_ok else 503

    return app
