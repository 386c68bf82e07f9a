"""Cheap rule checks run before paying for the LLM check: closed label sets, extractive spans."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from scarlet_ray.records import Passage
from scarlet_ray.synthesis.tasks import Task

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    t = text.lower().translate(_PUNCT)
    t = _ARTICLES.sub(" ", t)
    return " ".join(t.split())


def rule_check(task: Task, passages: Sequence[Passage], output: str,
               input_text: str = "") -> tuple[str | None, str]:
    """Return (reject reason or None, the output in canonical form)."""
    if input_text and normalize(output) == normalize(input_text):
        return "rule:output_repeats_input", output  # degenerate: small models do this a lot
    if task.labels:
        canon = {lab.upper(): lab for lab in task.labels}
        key = output.strip().strip(".").upper()
        if key not in canon:
            return "rule:label_not_allowed", output
        return None, canon[key]
    if task.extractive:
        ans = normalize(output)
        if not ans:
            return "rule:answer_empty_after_normalisation", output
        hay = " ".join(normalize(f"{p.title} {p.text}") for p in passages)
        if f" {ans} " not in f" {hay} ":
            return "rule:answer_not_in_context", output
    return None, output
