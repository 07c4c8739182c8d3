"""Flask application factory: one app over one Services, every channel a blueprint.

``create_app(services)`` is the whole configuration of the HTTP side: blueprints
read ``services().settings``, never the environment.
"""
from __future__ import annotations

import logging
import time

from flask import Flask, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from bot.db import StoreUnavailable
from bot.services import Services
from connectors.context import EXTENSION
from connectors.errors import MAX_ID, register_error_handlers

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

# Pages staff use: nothing from elsewhere, never framed (clickjacking), never cached.
STAFF_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class RowId(IntegerConverter):
    """``<int:...>`` in every route: a row id, so at most ``MAX_ID``; a larger one matches no
    route (404) instead of reaching PostgreSQL, which rejects it with an error (it was a 500)."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def create_app(services: Services) -> Flask:
    app = Flask(__name__)
    app.url_map.converters["int"] = RowId  # before any blueprint adds its routes
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions[EXTENSION] = services
    settings = services.settings
    if settings.server.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.server.trusted_proxies,
                                x_proto=settings.server.trusted_proxies)

    from connectors.agents import agents
    from connectors.agents.dashboard import dashboard
    from connectors.api import api
    from connectors.limits import apply_limits, init_limits
    from connectors.metrics import init_metrics
    from connectors.rasa_rest import rasa_rest
    from connectors.web import web
    from connectors.wechat import init_wechat

    init_metrics(app, services)
    init_limits(app, services)
    app.register_blueprint(api)
    app.register_blueprint(rasa_rest)
    app.register_blueprint(web)
    app.register_blueprint(agents)
    from connectors.agents.kb_views import kb_editor

    app.register_blueprint(kb_editor)
    app.register_blueprint(dashboard)
    init_wechat(app, services)
    apply_limits(app)
    register_error_handlers(app)

    @app.before_request
    def _schema():
        if not services.schema_ready and request.endpoint not in ("healthz", "readyz", "static", "web.static",
                                                                  "agents.static", "web.widget_js"):
            if not services.ensure_schema():
                raise StoreUnavailable("database schema not ready (database unreachable)")
        if services.kb_live is not None and request.endpoint not in ("static", "web.static", "agents.static",
                                                                     "web.widget_js", "healthz"):
            services.kb_live.sync()  # a newer published KB version: swap before answering

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        path = request.path
        if path.startswith("/agents") or path.startswith("/api/"):
            response.headers.setdefault("Content-Security-Policy", STAFF_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        if response.mimetype == "application/json":
            response.headers["Cache-Control"] = "no-store"  # transcripts and personal data: never cached
        return response

    @app.get("/healthz")
    def healthz():
        """Liveness: the process answers and the database does, within a message's deadline (it waited for
        the 2 s connect timeout instead: 2,007 ms on a frozen link while messages got their 503 in 1.5 s)."""
        db_ok = services.db.ping()
        bot = services.bot
        # retraining: a paraphrase publish is served over the previous models until the retrained ones land
        body = {"status": "ok" if db_ok else "degraded", "database": db_ok,
                "kb_version": bot.kb.version, "entries": len(bot.kb.entries), "retraining": bot.index.provisional}
        return jsonify(body), 200 if db_ok else 503

    @app.get("/readyz")
    def readyz():
        """Readiness: models warmed up (the first message will not pay for loading them),
        schema current, database reachable. Load balancers route here."""
        started = time.perf_counter()
        warm = services.bot.ready
        db_ok = services.ensure_schema() and services.db.ping()
        ready = warm and db_ok
        return jsonify({"ready": ready, "models": warm, "database": db_ok,
                        "checked_in_ms": round((time.perf_counter() - started) * 1000, 1)}), 200 if ready else 503

    return app
