"""The curated knowledge base: schema, loading and validation."""
from bot.kb.loader import KnowledgeBase, load_knowledge_base
from bot.kb.schema import Entry

__all__ = ["Entry", "KnowledgeBase", "load_knowledge_base"]
