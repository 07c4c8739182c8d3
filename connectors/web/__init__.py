"""Citizen web chat widget: ``widget.js`` + CSS, a demo page at ``/`` and ``/web/api``."""
from connectors.web.views import identity_signature, web

__all__ = ["identity_signature", "web"]
