"""hotline-bot engine: bilingual FAQ answering with human handoff."""
from bot.messages import Button, HandoffInfo, InvalidMessage, Message, Reply, ReplyMessage

__all__ = ["Bot", "Button", "HandoffInfo", "InvalidMessage", "Message", "Reply", "ReplyMessage"]


def __getattr__(name: str) -> type:
    # Bot pulls in torch and the encoders; import it only when asked for.
    if name == "Bot":
        from bot.engine import Bot

        return Bot
    raise AttributeError(name)
