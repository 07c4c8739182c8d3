"""Personal data: masking for display and export, encryption at rest, retention.

Citizens type ID numbers, phone numbers and bank cards into a hotline chat. Staff,
webhooks and exports only ever see them masked (``138****1234``); where the
original is needed (a callback number) it is stored encrypted (Fernet, key from
settings) and revealing it is an audited staff action. See README "Privacy".
"""
from __future__ import annotations

import hashlib
import hmac
import re

from cryptography.fernet import Fernet, InvalidToken

# Digit runs are matched whole (no digit on either side), so a long number is never
# half-masked as a phone inside a card number.
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])([1-9]\d{5})(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])")
_CARD = re.compile(r"(?<!\d)(\d{4})[ -]?(?:\d{4}[ -]?){2,3}\d{1,4}(?!\d)")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})[ -]?(\d{7,8})(?!\d)")
_PASSPORT = re.compile(r"(?<![A-Za-z0-9])([EeGg])\d{8}(?![A-Za-z0-9])")


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if not 16 <= len(digits) <= 19:  # any such run: a mistyped card number is still a card number
        return str(match.group(0))
    return f"{digits[:4]} **** **** {digits[-4:]}"


def mask(text: str) -> str:
    """The text with ID, passport, bank card, mobile and landline numbers masked."""
    text = _ID_CARD.sub(lambda m: m.group(1)[:3] + "*" * 13 + m.group(0)[-2:], text)
    text = _PASSPORT.sub(lambda m: m.group(1) + "*****" + m.group(0)[-3:], text)
    text = _CARD.sub(_card, text)
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(2)[-4:]}", text)


_NAME_ZH = re.compile(r"(我叫|我的名字是|我名字叫|本人姓名|我姓名是)\s*([\u4e00-\u9fff·]{1,4})")
_NAME_EN = re.compile(r"(?i)\b(my name is|i am called|this is)\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)")


def mask_names(text: str) -> str:
    """Names after 我叫 (and English "my name is") replaced by asterisks; numbers by ``mask``. For what staff
    read of citizens' own words outside a ticket: the KB inbox, the dashboard's unanswered questions."""
    text = _NAME_ZH.sub(lambda m: m.group(1) + "*" * len(m.group(2)), text)
    text = _NAME_EN.sub(lambda m: m.group(1) + " ***", text)
    return mask(text)


def mask_phone(phone: str) -> str:
    return mask(phone)


class Vault:
    """Encrypts what must be kept (Fernet: AES-128-CBC + HMAC) and keys lookups by HMAC."""

    def __init__(self, key: str):
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError) as exc:
            raise ValueError("privacy key must be a Fernet key (urlsafe base64 of 32 bytes)") from exc
        self._mac_key = hashlib.sha256(b"hotline-lookup\0" + key.encode()).digest()

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ValueError("cannot decrypt: wrong privacy key or damaged data") from None

    def lookup_hash(self, value: str) -> str:
        """Stable, keyed: equal inputs match without the value being stored."""
        return hmac.new(self._mac_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def protect(self, text: str) -> tuple[str, str | None]:
        """(masked text, encrypted original or None when nothing was masked)."""
        masked = mask(text)
        return masked, (self.encrypt(text) if masked != text else None)

    def pseudonym(self, value: str) -> str:
        """An opaque, stable stand-in for an external id (openids in webhooks)."""
        return "p_" + self.lookup_hash(value)[:20]
