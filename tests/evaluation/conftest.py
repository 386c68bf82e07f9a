"""Fixtures of the evaluation tests (the tiny encoder lives in tests/conftest.py: the index
tests use it too)."""
