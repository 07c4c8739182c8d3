"""Agent console: login, queue, claim, reply, resolve / hand back, callback tickets."""
from connectors.agents.views import agents, register

__all__ = ["agents", "register"]
