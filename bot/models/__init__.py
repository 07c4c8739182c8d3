"""Every table of hotline-bot, in one package: Alembic migrations are generated
from and tested against ``Base.metadata`` as defined here."""
from bot.models.base import Base, iso, utcnow
from bot.models.conversations import Conversation, Handoff, Identity, Turn
from bot.models.feedback import CallbackTicket, Feedback, Rating
from bot.models.kb import KbContact, KbEntry, KbInboxDismissal, KbPublication, KbRevision
from bot.models.outbox import OutboxDelivery, OutboxEvent
from bot.models.staff import Agent, AuditEntry, CannedReply, DutyPeriod, StaffSession
from bot.models.wechat import WeChatInbound, WeChatNonce, WeChatToken, WeChatUser, wechat_ordering_key

__all__ = [
    "Agent", "AuditEntry", "Base", "CallbackTicket", "CannedReply", "Conversation", "DutyPeriod", "Feedback",
    "Handoff", "Identity", "KbContact", "KbEntry", "KbInboxDismissal", "KbPublication", "KbRevision", "OutboxDelivery", "OutboxEvent", "Rating", "StaffSession", "Turn", "WeChatInbound",
    "WeChatNonce", "WeChatToken", "WeChatUser", "iso", "utcnow", "wechat_ordering_key",
]
