"""Staff console: login, queue, claim, reply, notes, transfer, resolve / hand back, callbacks, accounts."""
from connectors.agents.views import agents

__all__ = ["agents"]
