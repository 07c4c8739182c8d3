"""How long personal data stays (PIPL): retention and the right to be forgotten.

``purge`` deletes conversations (with their turns, tickets, feedback, ratings and
callbacks) whose last activity is older than the retention period, finished
outbox work, the WeChat message log and used nonces. ``forget`` deletes
everything of one citizen now. Both are audited (who, when, how much; never what).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from bot.conversations.outbox import purge_outbox
from bot.conversations.privacy import Vault
from bot.conversations.staff import StaffDirectory
from bot.db import Database, rowcount
from bot.models import (CallbackTicket, Conversation, Identity, OutboxDelivery, WeChatInbound, WeChatNonce, WeChatUser,
                        utcnow, wechat_ordering_key)

BATCH = 500


def _delete_conversations(session: Session, ids: Sequence[str]) -> int:
    if not ids:
        return 0
    session.execute(delete(Identity).where(Identity.conversation_id.in_(ids)))
    return rowcount(session.execute(delete(Conversation).where(Conversation.id.in_(ids))))


def purge(db: Database, retention_days: int, actor: str = "purge",
          clock: Callable[[], dt.datetime] = utcnow) -> dict[str, int]:
    """Delete what is older than ``retention_days`` (at least 1); returns counts per kind."""
    if retention_days < 1:
        raise ValueError(f"retention_days: at least 1, got {retention_days} (it would delete everything)")
    now = clock()
    before = now - dt.timedelta(days=retention_days)
    counts = {"conversations": 0}
    while True:  # in batches: a long purge never holds the database for long
        with db.transaction(timeout=60) as session:
            ids = session.execute(select(Conversation.id).where(Conversation.updated_at < before)
                                  .limit(BATCH)).scalars().all()
            counts["conversations"] += _delete_conversations(session, ids)
        if len(ids) < BATCH:
            break
    with db.transaction(timeout=60) as session:
        counts["callbacks"] = rowcount(session.execute(delete(CallbackTicket).where(
            CallbackTicket.conversation_id.is_(None), CallbackTicket.created_at < before)))
        counts["deliveries"], counts["events"] = purge_outbox(session, before, now - dt.timedelta(days=1))
        counts["wechat_messages"] = rowcount(session.execute(delete(WeChatInbound).where(
            WeChatInbound.created_at < before)))
        # the openid and the window of citizens not heard from within the retention period (kept for ever before)
        counts["wechat_users"] = rowcount(session.execute(delete(WeChatUser).where(
            WeChatUser.last_inbound_at < before)))
        counts["nonces"] = rowcount(session.execute(delete(WeChatNonce).where(
            WeChatNonce.created_at < now - dt.timedelta(hours=1))))
        StaffDirectory.audit(session, actor, "data.purged", f"older than {retention_days} days", counts)
    return counts


def forget(db: Database, vault: Vault, channel: str | None = None, external_id: str | None = None,
           phone: str | None = None, actor: str = "cli") -> dict[str, int]:
    """Delete every conversation of one citizen (by channel identity) and/or every callback
    request of one phone number."""
    counts = {"conversations": 0, "callbacks": 0, "wechat_messages": 0}
    with db.transaction(timeout=60) as session:
        if channel and external_id:
            ids = session.execute(select(Conversation.id).where(Conversation.channel == channel,
                                                                Conversation.user_id == external_id)).scalars().all()
            counts["conversations"] = _delete_conversations(session, list(ids))
            session.execute(delete(Identity).where(Identity.channel == channel, Identity.external_id == external_id))
            if channel == "wechat":
                account, _, openid = external_id.partition(":")
                counts["wechat_messages"] = rowcount(session.execute(delete(WeChatInbound).where(
                    WeChatInbound.account == account, WeChatInbound.openid == openid)))
                session.execute(delete(WeChatUser).where(WeChatUser.account == account, WeChatUser.openid == openid))
                # messages still waiting to go to them (a held reply holds the openid and the agent's text)
                counts["deliveries"] = rowcount(session.execute(delete(OutboxDelivery).where(
                    OutboxDelivery.ordering_key == wechat_ordering_key(account, openid))))
        if phone:
            from bot.conversations.desk import normalise_phone

            digest = vault.lookup_hash(normalise_phone(phone))
            counts["callbacks"] = rowcount(session.execute(delete(CallbackTicket).where(
                or_(CallbackTicket.phone_hash == digest))))
        StaffDirectory.audit(session, actor, "data.forgotten", channel or "phone", counts)
    return counts
