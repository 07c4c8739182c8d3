"""WeChat server API over httpx: access_token (cached in SQL) and customer-service send.

Errors come back as a ``SendResult`` the outbox can act on instead of exceptions,
and no message ever contains the AppSecret or the access_token.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass
from typing import Literal

import httpx

from bot.config import WeChatAccount
from bot.db import Database
from bot.models import WeChatToken, utcnow

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, and WeChat puts the access_token in the URL.
logging.getLogger("httpx").setLevel(logging.WARNING)

TOKEN_INVALID = {40001, 40014, 42001}
OUT_OF_WINDOW = 45015
OVER_LIMIT = 45047
# Refusals tied to the user's state: retry once the user writes again (window reopens).
HOLD = {OUT_OF_WINDOW, OVER_LIMIT, 40003, 43004, 43019}
TOKEN_EARLY_REFRESH = dt.timedelta(seconds=300)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    errcode: int | None = None
    error: str | None = None
    # after a failure: "later" = retry with backoff, "hold" = wait until the user writes again
    retry: Literal["none", "later", "hold"] = "none"


class WeChatApiError(RuntimeError):
    def __init__(self, errcode: int | None, message: str):
        super().__init__(message)
        self.errcode = errcode


class WeChatClient:
    """One account's API client; thread-safe, one token refresh at a time per process."""

    def __init__(self, account: WeChatAccount, api_base: str, db: Database,
                 http: httpx.Client | None = None, timeout: float = 15.0):
        self.account = account
        self.api_base = api_base.rstrip("/")
        self.db = db
        self.http = http or httpx.Client(timeout=timeout)
        self._lock = threading.Lock()

    # -- access_token ------------------------------------------------------------

    def access_token(self, stale: str | None = None) -> str:
        """A valid token; ``stale`` is one WeChat just rejected, so it is never returned again."""
        with self._lock:
            cached = self._cached()
            if cached is not None and cached != stale:
                return cached
            return self._refresh()

    def _cached(self) -> str | None:
        with self.db.read() as session:
            row = session.get(WeChatToken, self.account.name)
            if row is not None and row.expires_at - TOKEN_EARLY_REFRESH > utcnow():
                return row.access_token
        return None

    def _refresh(self) -> str:
        try:
            response = self.http.get(f"{self.api_base}/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self.account.app_id, "secret": self.account.app_secret})
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise WeChatApiError(None, f"token request failed: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            errcode = data.get("errcode") if isinstance(data, dict) else None
            raise WeChatApiError(errcode if isinstance(errcode, int) else None, f"token refused (errcode {errcode})")
        expires_in = data.get("expires_in")
        expires_in = expires_in if isinstance(expires_in, int) and expires_in > 0 else 7200
        token = data["access_token"]
        with self.db.transaction() as session:
            row = session.get(WeChatToken, self.account.name)
            expires_at = utcnow() + dt.timedelta(seconds=expires_in)
            if row is None:
                session.add(WeChatToken(account=self.account.name, access_token=token, expires_at=expires_at))
            else:
                row.access_token, row.expires_at = token, expires_at
        log.info("wechat %s: access_token refreshed", self.account.name)
        return token

    # -- customer-service messages ---------------------------------------------

    def send_text(self, openid: str, content: str) -> SendResult:
        """POST cgi-bin/message/custom/send; refreshes the token once if WeChat says it is invalid."""
        body = json.dumps({"touser": openid, "msgtype": "text", "text": {"content": content}},
                          ensure_ascii=False).encode("utf-8")
        stale: str | None = None
        for _ in range(2):
            try:
                token = self.access_token(stale=stale)
            except WeChatApiError as exc:
                return SendResult(False, exc.errcode, str(exc), "later")
            result = self._post(token, body)
            if result.errcode in TOKEN_INVALID:
                stale = token
                continue
            return result
        return result

    def _post(self, token: str, body: bytes) -> SendResult:
        """Success is HTTP 200 *and* an explicit ``errcode: 0``; anything else is retried
        (an HTTP 500 without errcode was once read as success: 0/9 answers delivered)."""
        try:
            response = self.http.post(f"{self.api_base}/cgi-bin/message/custom/send",
                                      params={"access_token": token}, content=body,
                                      headers={"Content-Type": "application/json; charset=utf-8"})
        except httpx.HTTPError as exc:
            # A timeout after the request left may still have been delivered: retried all the
            # same (at least once); the long default timeout keeps that rare.
            return SendResult(False, None, f"send failed: {type(exc).__name__}", "later")
        if response.status_code != 200:
            return SendResult(False, None, f"send failed: HTTP {response.status_code}", "later")
        try:
            data = response.json()
        except ValueError:
            return SendResult(False, None, "send failed: HTTP 200, not JSON", "later")
        errcode = data.get("errcode") if isinstance(data, dict) else None
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            return SendResult(False, None, "send failed: HTTP 200, no errcode", "later")
        if errcode == 0:
            return SendResult(True, 0)
        errmsg = str(data.get("errmsg", ""))[:120]
        return SendResult(False, errcode, f"errcode {errcode}: {errmsg}", "hold" if errcode in HOLD else "later")

    def close(self) -> None:
        self.http.close()
