"""Rasa 3.6 side by side with hotline-bot (benchmark tool only; see README.md here).

Nothing here imports rasa: the export runs in hotline-bot's own venv, and
training/serving run ``rasa`` as a subprocess from its own Python 3.10 venv.
"""
