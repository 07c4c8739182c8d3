"""WeChat settings: several accounts, one API base, the reply budget.

Read from ``HOTLINE_WECHAT_*`` env vars (and ``hotline.env``) like the core
settings, so an operator configures every channel the same way. Secrets live
only here and are never logged (``repr=False``).
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Short enough that "wx-<name>-<openid>" (28-char openids) fits the 64-char conversation id.
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_]{1,24}$")


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind a 43-character EncodingAESKey."""
    if not isinstance(encoding_aes_key, str) or len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("EncodingAESKey must be base64") from None
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


class WeChatAccount(BaseModel):
    """One Official Account or mini-program, as set up in the WeChat admin console."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str
    token: str = Field(min_length=3, max_length=32, repr=False)
    app_id: str = Field(min_length=1, max_length=64)
    app_secret: str = Field(default="", repr=False)
    encoding_aes_key: str | None = Field(default=None, repr=False)
    previous_encoding_aes_key: str | None = Field(default=None, repr=False)
    # Mini-program customer service has no passive reply: every answer goes out by the send API.
    kind: Literal["official", "miniprogram"] = "official"
    reply_budget: float | None = Field(default=None, gt=0, le=4.5)

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not ACCOUNT_NAME.match(value):
            raise ValueError("account name must be 1-24 letters, digits or underscores")
        return value

    @field_validator("encoding_aes_key", "previous_encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: str | None) -> str | None:
        if value:
            decode_aes_key(value)
        return value or None


class WeChatSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_WECHAT_", env_file="hotline.env", extra="ignore",
                                      hide_input_in_errors=True)  # errors must not echo secrets

    accounts: list[WeChatAccount] = Field(default_factory=list)
    api_base: str = "https://api.weixin.qq.com"
    # WeChat gives up after 5 s; answer passively only when the bot is done well before that.
    reply_budget: float = Field(default=4.0, gt=0, le=4.5)
    max_body_bytes: int = Field(default=16 * 1024, ge=1024, le=64 * 1024)
    # Plain mode signs only the URL: reject POSTs whose timestamp is this far off (0 = off).
    max_clock_skew: int = Field(default=300, ge=0)
    http_timeout: float = Field(default=5.0, gt=0)
    workers: int = Field(default=8, ge=1, le=64)
    outbox_worker: bool = True
    outbox_interval: float = Field(default=2.0, gt=0)
    outbox_max_backoff: float = Field(default=600.0, gt=0)
    window_hours: int = Field(default=48, ge=1)
    window_messages: int = Field(default=5, ge=1)
    # WeChat text messages are limited to 2048 bytes of UTF-8.
    max_reply_bytes: int = Field(default=2000, ge=200, le=2048)

    @model_validator(mode="after")
    def _unique_names(self) -> "WeChatSettings":
        names = [a.name for a in self.accounts]
        if len(names) != len(set(names)):
            raise ValueError("WeChat account names must be unique")
        self.api_base = self.api_base.rstrip("/")
        return self

    def account(self, name: str) -> WeChatAccount | None:
        return next((a for a in self.accounts if a.name == name), None)

    def budget_for(self, account: WeChatAccount) -> float:
        return account.reply_budget or self.reply_budget
