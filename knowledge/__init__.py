"""The default knowledge base, shipped with the package as data (YAML + text files).

A hotline's own content lives wherever ``HOTLINE_KNOWLEDGE_DIR`` points
(``hotline-bot init DIR`` writes a starter copy of this one)."""
