"""JSON errors for every HTTP failure, and the one place domain errors become status codes.

``bot/`` raises domain exceptions (InvalidMessage, ConversationError,
InvalidTransition, StoreUnavailable); this module maps them: bad input → 400
naming the field, forbidden → 403, unknown → 404, wrong state → 409, too many →
429 with a bilingual text a widget can show, database down → 503.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any

from flask import Flask, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from bot.conversations.service import ConversationError
from bot.conversations.status import InvalidTransition
from bot.db import SchemaError, StoreUnavailable
from bot.messages import InvalidMessage

log = logging.getLogger(__name__)

KIND_STATUS = {"invalid": 400, "forbidden": 403, "not_found": 404, "conflict": 409, "limited": 429}
# Row ids and cursors: the range of an INTEGER column on PostgreSQL. A larger number can name no row,
# and PostgreSQL answers a comparison with one by an error (an id of 2^31 was a 500 on every id route).
MAX_ID = 2**31 - 1
MAX_JSON_DEPTH = 32

TOO_MANY = {"zh": "您发送消息太频繁了，请稍等片刻再发送。如情况紧急，请直接拨打 120。",
            "en": "You are sending messages too quickly; please wait a moment. In an emergency, call 120 now."}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.extra = extra or {}


def error_response(status: int, message: str, field: str | None = None, extra: dict | None = None):
    body: dict[str, Any] = {"error": {"status": status, "message": message}}
    if field:
        body["error"]["field"] = field
    body["error"].update(extra or {})
    return jsonify(body), status


def _check_strings(value: Any, path: str = "", depth: int = 0) -> None:
    """Every string storable anywhere (no NUL, no lone surrogate), nesting bounded."""
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, f"{path or 'body'}: nested too deeply", path or None)
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(400, f"{path or 'body'}: must not contain NUL characters", path or None)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{path or 'body'}: must be valid Unicode (no lone surrogates)", path or None) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, path, depth + 1)
            _check_strings(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_strings(item, f"{path}.{i}" if path else str(i), depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ApiError(400, f"{path or 'body'}: must be a finite number", path or None)


def parse_json_body(model: type[BaseModel]) -> Any:
    """Parse and validate the request's JSON body into ``model``, or raise a 400 naming the field."""
    raw = request.get_data(cache=True)
    if not raw:
        raise ApiError(400, "request body must be a JSON object")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed JSON in request body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    _check_strings(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, f"{field}: {first['msg']}" if field else first["msg"], field) from None


def query_int(name: str, default: int | None) -> int | None:
    """A non-negative integer query parameter, or a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    # length first: int() of more than 4,300 digits raises ValueError (a 500)
    if len(raw) > 10 or not raw.isascii() or not raw.isdigit() or int(raw) > MAX_ID:
        raise ApiError(400, f"{name}: must be an integer from 0 to {MAX_ID}", name)
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


def query_text(name: str, max_chars: int, required: bool = False) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, f"{name}: query parameter is required", name)
        return None
    if len(raw) > max_chars:
        raise ApiError(400, f"{name}: must be at most {max_chars} characters", name)
    _check_strings(raw, name)
    return raw


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.field, exc.extra)

    @app.errorhandler(InvalidMessage)
    def _invalid_message(exc: InvalidMessage):
        return error_response(400, str(exc), exc.field)

    @app.errorhandler(ConversationError)
    def _domain(exc: ConversationError):
        status = KIND_STATUS.get(exc.kind, 400)
        extra = {"text": TOO_MANY} if status == 429 else None
        return error_response(status, exc.message, exc.field, extra)

    @app.errorhandler(InvalidTransition)
    def _transition(exc: InvalidTransition):
        return error_response(409, str(exc))

    @app.errorhandler(StoreUnavailable)
    def _store_down(exc: StoreUnavailable):
        log.error("database unavailable: %s", exc)
        response, status = error_response(503, "the service is temporarily unavailable (database unreachable); "
                                                "please retry")
        response.headers["Retry-After"] = "2"
        return response, status

    @app.errorhandler(SchemaError)
    def _schema(exc: SchemaError):
        log.error("%s", exc)
        return error_response(503, "the service is being upgraded; please retry")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        messages = {413: f"request body too large (limit {app.config.get('MAX_CONTENT_LENGTH')} bytes)",
                    429: "too many requests; please slow down"}
        extra = {"text": TOO_MANY} if exc.code == 429 else None
        response, status = error_response(exc.code or 500, messages.get(exc.code, exc.description or exc.name),
                                          extra=extra)
        if exc.code == 429:
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                response.headers["Retry-After"] = str(int(retry_after))
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error; the message was not processed, please retry")
