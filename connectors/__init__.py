"""Channels in front of the engine: HTTP API, Rasa REST, WeChat, web widget, agent console."""
