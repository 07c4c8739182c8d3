"""Citizen web chat widget: ``widget.js`` + CSS, a demo page at ``/`` and ``/web/api``."""
from connectors.web.views import register, web

__all__ = ["register", "web"]
