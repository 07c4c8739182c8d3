"""The conversations half: one status machine, one writer of it, one outbox.

- ``status``   ConversationStatus and its transitions
- ``service``  ConversationService: the only writer of conversations, turns and tickets
- ``events``   what every change announces; ``outbox`` records and delivers them
- ``notify``   wake-ups for long polls (local, Redis, or tailing the outbox)
- ``desk``     agents' and citizens' use of handoffs; ``staff`` accounts and sessions
- ``privacy``  masking, encryption at rest; ``webhooks`` the webhook consumer
"""
from bot.conversations.service import ConversationError, ConversationService
from bot.conversations.status import ConversationStatus, InvalidTransition

__all__ = ["ConversationError", "ConversationService", "ConversationStatus", "InvalidTransition"]
