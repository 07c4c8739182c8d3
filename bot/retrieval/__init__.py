"""Hybrid retrieval: BM25 over domain tokens ⊕ dense vectors in faiss, per KB entry."""
from bot.retrieval.hybrid import Candidate, HybridRetriever, KnownQuestions

__all__ = ["Candidate", "HybridRetriever", "KnownQuestions"]
