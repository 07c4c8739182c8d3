"""Benchmarks and evaluation (not part of the installed package)."""
