"""``/wechat/<account>``: GET = server verification, POST = messages (plain or safe mode).

Only transport concerns live here (size, signature, decryption, parsing, reply
envelope); what to answer is ``WeChatService``'s job.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time

from flask import Blueprint, Response, request

import hashlib

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from bot.config import WeChatAccount
from bot.models import WeChatNonce, utcnow
from connectors.context import services
from connectors.errors import ApiError
from connectors.limits import allow
from connectors.wechat.crypto import AppIdMismatch, CryptoError, check_signature
from connectors.wechat.users import external_id
from connectors.wechat.xml import Inbound, MalformedMessage, encrypted_reply, is_json, parse_fields, text_reply

log = logging.getLogger(__name__)

wechat_blueprint = Blueprint("wechat", __name__, url_prefix="/wechat")

TIMESTAMP = re.compile(r"^\d{1,12}$")
NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_ECHOSTR = 512


def _runtime():
    return services().extras["wechat"]


def _account(name: str) -> WeChatAccount:
    account = _runtime().settings.account(name)
    if account is None:
        raise ApiError(404, "unknown WeChat account")
    return account


def _forbidden(account: WeChatAccount, why: str) -> ApiError:
    log.warning("wechat %s: rejected request: %s", account.name, why)
    return ApiError(403, "signature check failed")


def _signed_params(account: WeChatAccount) -> tuple[str, str]:
    timestamp, nonce = request.args.get("timestamp", ""), request.args.get("nonce", "")
    if not TIMESTAMP.match(timestamp) or not NONCE.match(nonce):
        raise _forbidden(account, "missing or malformed timestamp/nonce")
    return timestamp, nonce


def _text(body: str, status: int = 200, mimetype: str = "text/plain") -> Response:
    response = Response(body, status=status, mimetype=mimetype)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def _once(account: WeChatAccount, timestamp: str, nonce: str, body: bytes) -> None:
    """Plain mode signs only the URL: bind its (timestamp, nonce) to the first body it came
    with. WeChat's retries resend the same body; a captured URL replayed with another
    openid or text within the clock-skew window is refused."""
    digest = hashlib.sha256(body).hexdigest()
    key = f"{timestamp}:{nonce}"
    db = services().db
    now = utcnow()
    with db.transaction() as session:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(WeChatNonce).values(account=account.name, nonce=key, body_hash=digest,
                                                           created_at=now)
                        .on_conflict_do_nothing(index_elements=["account", "nonce"]))
        first = session.execute(select(WeChatNonce.body_hash).where(WeChatNonce.account == account.name,
                                                                    WeChatNonce.nonce == key)).scalar()
        session.execute(delete(WeChatNonce).where(
            WeChatNonce.created_at < now - dt.timedelta(seconds=2 * _runtime().settings.max_clock_skew)))
    if first != digest:
        raise _forbidden(account, "signed URL replayed with another body")


@wechat_blueprint.get("/<account_name>")
def verify(account_name: str):
    """WeChat's server check: echo ``echostr`` back when the signature holds."""
    account = _account(account_name)
    timestamp, nonce = _signed_params(account)
    echostr = request.args.get("echostr", "")
    if not echostr or len(echostr) > MAX_ECHOSTR:
        raise ApiError(400, "echostr is required")
    msg_signature = request.args.get("msg_signature")
    crypto = _runtime().crypto(account.name)
    if msg_signature and crypto is not None:  # encrypted echostr (WeCom-style verification)
        if not crypto.check_msg_signature(msg_signature, timestamp, nonce, echostr):
            raise _forbidden(account, "bad msg_signature")
        try:
            return _text(crypto.decrypt(echostr).message.decode("utf-8"))
        except (CryptoError, UnicodeError):
            raise ApiError(400, "echostr cannot be decrypted") from None
    if not check_signature(request.args.get("signature"), account.token, timestamp, nonce):
        raise _forbidden(account, "bad signature")
    return _text(echostr)


@wechat_blueprint.post("/<account_name>")
def receive(account_name: str):
    started = time.monotonic()
    account = _account(account_name)
    runtime = _runtime()
    limit = runtime.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body too large (limit {limit} bytes)")
    request.max_content_length = limit  # also bounds chunked bodies without Content-Length
    timestamp, nonce = _signed_params(account)
    skew = runtime.settings.max_clock_skew
    if skew and abs(time.time() - int(timestamp)) > skew:
        raise _forbidden(account, "stale timestamp")
    safe_mode = request.args.get("encrypt_type", "raw").lower() == "aes"
    # Safe mode is authenticated by msg_signature over the ciphertext; a plain signature,
    # which WeChat sends as well, must still be right when present.
    plain_signature = request.args.get("signature")
    if (not safe_mode or plain_signature is not None) and not check_signature(
            plain_signature, account.token, timestamp, nonce):
        raise _forbidden(account, "bad signature")

    body = request.get_data(cache=False)
    # Both modes: a safe-mode push's URL carries a plain signature too, and was replayed in plain mode (without
    # encrypt_type and msg_signature) with a forged message within the clock-skew window.
    _once(account, timestamp, nonce, body)
    try:
        fields = parse_fields(body)
        fmt = "json" if is_json(body) else "xml"
        key = None
        if safe_mode:
            crypto = runtime.crypto(account.name)
            if crypto is None:
                raise ApiError(400, "safe mode is not configured for this account")
            encrypted = fields.get("Encrypt", "")
            if not encrypted:
                raise ApiError(400, "Encrypt is required in safe mode")
            if not crypto.check_msg_signature(request.args.get("msg_signature"), timestamp, nonce, encrypted):
                raise _forbidden(account, "bad msg_signature")
            try:
                decrypted = crypto.decrypt(encrypted)
            except AppIdMismatch:
                raise _forbidden(account, "AppID mismatch") from None
            except CryptoError:
                raise ApiError(400, "Encrypt cannot be decrypted") from None
            key = decrypted.key
            fields = parse_fields(decrypted.message)
            fmt = "json" if is_json(decrypted.message) else "xml"
        inbound = Inbound.from_fields(fields, fmt)
    except MalformedMessage as exc:
        raise ApiError(400, str(exc)) from None

    svc = services()
    if not allow(svc.settings.limits.messages_per_user, "wechat", external_id(account.name, inbound.from_user)):
        language = "zh"
        reply = svc.bot.responses("too_many", language) if inbound.msg_type == "text" else None
    else:
        reply = runtime.channel.accept(account, inbound, started)
    if reply is None:
        return _text("success")
    xml = text_reply(inbound.from_user, inbound.to_user, reply)
    if not safe_mode:
        return _text(xml, mimetype="application/xml")
    now = str(int(time.time()))
    encrypted, signature = runtime.crypto(account.name).seal(xml.encode("utf-8"), now, nonce, key=key)
    return _text(encrypted_reply(encrypted, signature, now, nonce), mimetype="application/xml")
