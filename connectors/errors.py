"""JSON errors for every HTTP failure, so clients never have to parse HTML."""
from __future__ import annotations

import logging
import math

from flask import Flask, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from bot.messages import InvalidMessage
from bot.store import StoreUnavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def error_response(status: int, message: str, field: str | None = None):
    body = {"error": {"status": status, "message": message}}
    if field:
        body["error"]["field"] = field
    return jsonify(body), status


def parse_json_body(request, model: type[BaseModel]) -> BaseModel:
    """Parse and validate a JSON request body into ``model`` or raise a 400 ApiError."""
    raw = request.get_data(cache=True)
    if not raw:
        raise ApiError(400, "request body must be a JSON object")
    try:
        data = request.get_json(force=True, silent=False)
    except Exception:
        raise ApiError(400, "malformed JSON in request body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, f"{field}: {first['msg']}" if field else first["msg"], field) from None


MAX_QUERY_INT = 2**53  # ids and cursors: beyond this a client is fuzzing, not paging


def query_int(name: str, default: int | None) -> int | None:
    """A non-negative integer query parameter, or a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_QUERY_INT:
        raise ApiError(400, f"{name}: must be a non-negative integer", name)
    return int(raw)


def query_seconds(name: str) -> float:
    """A finite, non-negative number of seconds (``nan``/``inf`` would make a wait loop spin forever)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"{name}: must be a finite, non-negative number of seconds", name)
    return value


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.field)

    @app.errorhandler(InvalidMessage)
    def _invalid_message(exc: InvalidMessage):
        return error_response(400, str(exc), exc.field)

    @app.errorhandler(StoreUnavailable)
    def _store_down(exc: StoreUnavailable):
        log.error("database unavailable: %s", exc)
        return error_response(503, "the service is temporarily unavailable (database unreachable); please retry")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        messages = {413: f"request body too large (limit {app.config.get('MAX_CONTENT_LENGTH')} bytes)"}
        return error_response(exc.code or 500, messages.get(exc.code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error; the message was not processed, please retry")
