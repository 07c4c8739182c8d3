"""Inbound message parsing (XML or mini-program JSON) and reply XML.

XML goes through defusedxml with DTDs forbidden, so entity bombs and external
entities fail before expanding; anything odd is a ``MalformedMessage`` → 400.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_FIELDS = 64
MAX_FIELD_CHARS = 8192


class MalformedMessage(ValueError):
    """The body is not a WeChat message we can read."""


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def is_json(body: bytes) -> bool:
    return body.lstrip()[:1] == b"{"


def parse_fields(body: bytes) -> dict[str, str]:
    """Top-level fields of a WeChat message, XML (``<xml>…</xml>``) or JSON (mini-program)."""
    if not body or not body.strip():
        raise MalformedMessage("empty body")
    return _parse_json(body) if is_json(body) else _parse_xml(body)


def _parse_xml(body: bytes) -> dict[str, str]:
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError, UnicodeError):
        raise MalformedMessage("malformed XML") from None
    if root.tag != "xml":
        raise MalformedMessage("root element must be <xml>")
    children = list(root)
    if len(children) > MAX_FIELDS:
        raise MalformedMessage("too many fields")
    fields: dict[str, str] = {}
    for child in children:
        text = (child.text or "").strip() if child.tag != "Content" else (child.text or "")
        if len(text) > MAX_FIELD_CHARS:
            raise MalformedMessage("field too long")
        if "\x00" in text or not _encodable(text):
            raise MalformedMessage(f"field {child.tag!r}: not valid text")
        fields.setdefault(str(child.tag), text)
    return fields


def _parse_json(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeError, RecursionError):
        raise MalformedMessage("malformed JSON") from None
    if not isinstance(data, dict) or len(data) > MAX_FIELDS:
        raise MalformedMessage("JSON body must be a small object")
    fields: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue  # nested objects (e.g. mini-program page cards) are not needed
        text = str(value)
        if len(text) > MAX_FIELD_CHARS:
            raise MalformedMessage("field too long")
        if "\x00" in text or not _encodable(text):
            raise MalformedMessage(f"field {key!r}: not valid text")
        fields[str(key)] = text
    return fields


@dataclass(frozen=True)
class Inbound:
    """One message or event as WeChat pushed it."""

    to_user: str
    from_user: str  # openid
    create_time: int
    msg_type: str
    content: str = ""
    msg_id: str = ""
    event: str = ""
    fmt: str = "xml"  # xml | json: the push format, also used for the reply

    @classmethod
    def from_fields(cls, fields: dict[str, str], fmt: str) -> "Inbound":
        from_user = fields.get("FromUserName", "").strip()
        msg_type = fields.get("MsgType", "").strip().lower()
        create_time = fields.get("CreateTime", "").strip()
        if not from_user or len(from_user) > 64 or not msg_type or len(msg_type) > 32:
            raise MalformedMessage("FromUserName and MsgType are required")
        if not create_time.isdigit() or len(create_time) > 12:
            raise MalformedMessage("CreateTime must be a number")
        msg_id = fields.get("MsgId", "").strip()
        if msg_id and (not msg_id.isdigit() or len(msg_id) > 32):
            raise MalformedMessage("MsgId must be a number")
        return cls(to_user=fields.get("ToUserName", "").strip(), from_user=from_user,
                   create_time=int(create_time), msg_type=msg_type, content=fields.get("Content", ""),
                   msg_id=msg_id, event=fields.get("Event", "").strip().lower(), fmt=fmt)

    @property
    def dedupe_key(self) -> str:
        """MsgId for messages; FromUserName + CreateTime (+ event) for events, as WeChat advises."""
        if self.msg_id:
            return f"m:{self.msg_id}"
        return f"e:{self.from_user}:{self.create_time}:{self.event or self.msg_type}"[:160]


def cdata(text: str) -> str:
    """CDATA that survives a literal ``]]>`` in the text."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, content: str, create_time: int | None = None) -> str:
    return ("<xml>"
            f"<ToUserName>{cdata(to_user)}</ToUserName>"
            f"<FromUserName>{cdata(from_user)}</FromUserName>"
            f"<CreateTime>{int(create_time if create_time is not None else time.time())}</CreateTime>"
            "<MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{cdata(content)}</Content>"
            "</xml>")


def encrypted_reply(encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> str:
    return ("<xml>"
            f"<Encrypt>{cdata(encrypted)}</Encrypt>"
            f"<MsgSignature>{cdata(msg_signature)}</MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp>"
            f"<Nonce>{cdata(nonce)}</Nonce>"
            "</xml>")
