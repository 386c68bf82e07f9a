"""Answer metrics as the paper scores each task: normalised substring match, ROUGE-L, unigram F1.

Normalisation is SQuAD's (lowercase, drop punctuation, drop the articles a/an/the, squeeze
whitespace). Every metric takes the best score over the reference answers (the sample's output
plus its aliases). ``accuracy`` (FEVER-style labels) is scored as substring match too, as the
paper does; ROUGE-L is the ``rouge-score`` library's F-measure.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def substring_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if some normalised answer occurs in the normalised prediction as whole words.

    Whole words, not raw characters: with character matching the answer "no" is found in
    "not" and "know", which scored a 135M model's "No, they are not ..." as right for "yes"
    questions. An empty answer never matches (it would be in everything)."""
    pred = f" {normalize_answer(prediction)} "
    for a in answers:
        na = normalize_answer(a)
        if na and f" {na} " in pred:
            return 1.0
    return 0.0


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best unigram F1 (SQuAD/KILT style) between the normalised prediction and an answer."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for a in answers:
        gold = normalize_answer(a).split()
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = Counter(pred) & Counter(gold)
        same = sum(common.values())
        if same == 0:
            continue
        p, r = same / len(pred), same / len(gold)
        best = max(best, 2 * p * r / (p + r))
    return best


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, answers: Sequence[str]) -> float:
    """Best ROUGE-L F-measure against the answers (rouge-score's tokenizer, no stemming)."""
    scorer = _rouge_scorer()
    return max((scorer.score(a, prediction)["rougeL"].fmeasure for a in answers if a.strip()),
               default=0.0)


METRIC_FNS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "substring": substring_match,
    "accuracy": substring_match,
    "rougeL": rouge_l,
    "f1": token_f1,
}


def score(metric: str, prediction: str, answers: Sequence[str]) -> float:
    """Score ``prediction`` with the task's metric (see synthesis/tasks.py Task.metric)."""
    try:
        fn = METRIC_FNS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRIC_FNS)}") from None
    return fn(prediction, answers)


def references(output: str, aliases: Sequence[str]) -> list[str]:
    """The sample's ground truth followed by its aliases, without duplicates or blanks."""
    seen: dict[str, None] = {}
    for a in [output, *aliases]:
        if a and a.strip():
            seen.setdefault(a, None)
    return list(seen)
