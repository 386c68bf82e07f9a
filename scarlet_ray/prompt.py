"""The generator prompt of DESIGN.md section 5, shared by attribution, synthesis and RAG, and the
one rule that fits a prompt's passages into its model's window (``fit_passages``).

Every stage that puts passages in front of a model (attribution's teacher-forced scoring, local
synthesis, RAG generation) fits them with ``fit_passages`` and records what it cut in a
``WindowLog``, so no prompt is longer than the window (a 50,000-word passage once made a local
generate run for minutes and write nothing) and the manifest says what the model did not see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from scarlet_ray.records import Passage

SYSTEM_PROMPT = "You are a helpful AI assistant."

RULE = "shrink-longest-v1"
MIN_WORDS = 10  # no passage is cut shorter than this: too little text to be worth a slot
RULE_TEXT = ("if prompt + room exceeds the window, every passage is cut to its first C words, C "
             "the largest cap that fits (the longest passages shrink first, evenly; ids and "
             f"titles kept); if C = {MIN_WORDS} does not fit, the lowest-ranked passages are "
             "dropped whole; a prompt that does not fit without passages is an error")
MAX_IDS_RECORDED = 100  # ids listed in a manifest's prompt_window; the count covers the rest


def render_passages(passages: Sequence[Passage]) -> str:
    return "\n\n".join(p.render() for p in passages)


def user_message(instruction: str, passages: Sequence[Passage], input_text: str) -> str:
    """``{instruction}\\n\\nPassages:\\n{passages}\\n\\nInput: {input}``; no passages, no block."""
    if passages:
        return f"{instruction}\n\nPassages:\n{render_passages(passages)}\n\nInput: {input_text}"
    return f"{instruction}\n\nInput: {input_text}"


def chat_messages(instruction: str, passages: Sequence[Passage], input_text: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(instruction, passages, input_text)},
    ]


# ---------------------------------------------------------------- fitting the window

class PromptTooLong(ValueError):
    """The prompt does not fit its window even with (nearly) no passages; one line, no fix."""


@dataclass
class PromptFit:
    """The passages a prompt is built from after fitting, and what the fitting cut."""

    passages: list[Passage]
    ids: list[int]  # token ids of the prompt built from ``passages``
    window: int | None  # tokens for prompt + room; None: unknown, nothing fitted
    room: int  # tokens kept free after the prompt (answer or max_new_tokens)
    tokens_before: int  # prompt tokens before fitting
    shortened: list[str] = field(default_factory=list)  # passage ids cut to ``cap_words``
    dropped: list[str] = field(default_factory=list)  # passage ids left out whole
    cap_words: int | None = None
    order: list[str] = field(default_factory=list, repr=False)  # passage ids as given

    @property
    def cut(self) -> list[str]:
        """Passage ids the model does not see whole, in passage order."""
        gone = set(self.shortened) | set(self.dropped)
        return [i for i in self.order if i in gone]

    @property
    def tokens_after(self) -> int:
        return len(self.ids)

    @property
    def note(self) -> str:
        """One line for logs and manifests; empty when nothing was cut."""
        if not self.cut:
            return ""
        parts = []
        if self.shortened:
            parts.append(f"passage(s) {', '.join(self.shortened)} shortened to "
                         f"{self.cap_words} words")
        if self.dropped:
            parts.append(f"passage(s) {', '.join(self.dropped)} dropped")
        return (f"{' and '.join(parts)} to fit {self.window} tokens (prompt {self.tokens_before}"
                f" -> {self.tokens_after} tokens, {self.room} kept for the answer)")


def _capped(passages: Sequence[Passage], words: Sequence[list[str]], cap: int) -> list[Passage]:
    return [p if len(w) <= cap else Passage(id=p.id, title=p.title, text=" ".join(w[:cap]))
            for p, w in zip(passages, words, strict=True)]


def _largest(lo: int, hi: int, best: Any, attempt: Callable[[int], Any]) -> tuple[int, Any]:
    """Binary search for the largest n in [lo, hi] whose ``attempt(n)`` is not None (``lo`` is
    known to fit, with result ``best``); returns (n, its result)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        got = attempt(mid)
        if got is not None:
            lo, best = mid, got
        else:
            hi = mid - 1
    return lo, best


def fit_passages(encode: Callable[[Sequence[Passage]], Sequence[int]],
                 passages: Sequence[Passage], *, window: int | None, room: int = 0,
                 min_passages: int = 0) -> PromptFit:
    """Fit ``passages`` so that ``len(encode(passages)) + room <= window`` (see ``RULE_TEXT``).

    ``encode`` builds and tokenises the whole prompt from a list of passages, so one rule serves
    every prompt shape (the chat prompt of section 5, the synthesis prompts). A prompt that
    fits is returned unchanged; only the passages are ever cut, never the instruction or input.
    Raises ``PromptTooLong`` when fewer than ``min_passages`` passages fit.
    """
    ps = list(passages)
    order = [p.id for p in ps]
    ids = list(encode(ps))
    before = len(ids)
    if window is None or before + room <= window:
        return PromptFit(ps, ids, window, room, before, order=order)
    budget = window - room
    bare = list(encode([])) if ps else ids
    if len(bare) > budget:
        raise PromptTooLong(f"context: the prompt without passages is {len(bare)} tokens; with "
                            f"{room} kept for the answer it exceeds the budget of {window} "
                            "tokens")
    words = [p.text.split() for p in ps]

    def attempt(m: int, cap: int) -> list[int] | None:
        got = list(encode(_capped(ps[:m], words[:m], cap)))
        return got if len(got) <= budget else None

    # how many passages fit at the smallest cap (all of them, unless the context is crowded)
    m, best = len(ps), attempt(len(ps), MIN_WORDS)
    if best is None:
        # 0 passages fit: checked above
        m, best = _largest(0, len(ps) - 1, bare, lambda n: attempt(n, MIN_WORDS))
    if m < min_passages:
        raise PromptTooLong(f"context: only {m} passage(s) fit the budget of {window} tokens "
                            f"({room} kept for the answer); at least {min_passages} needed")
    # the largest word cap that fits; a word is at least one token, so the cap is <= budget
    longest = max((len(w) for w in words[:m]), default=0)
    lo, best = _largest(MIN_WORDS, max(MIN_WORDS, min(longest, budget)), best,
                        lambda cap: attempt(m, cap))
    kept = _capped(ps[:m], words[:m], lo)
    shortened = [p.id for p, w in zip(ps[:m], words[:m], strict=True) if len(w) > lo]
    return PromptFit(kept, best, window, room, before, shortened=shortened,
                     dropped=[p.id for p in ps[m:]], cap_words=lo if shortened else None,
                     order=order)


class PromptEncoder(Protocol):
    def prompt_ids(self, instruction: str, passages: Sequence[Passage],
                   input_text: str) -> list[int]: ...


def fit_chat_prompt(gen: PromptEncoder, instruction: str, passages: Sequence[Passage],
                    input_text: str, *, window: int | None, room: int,
                    min_passages: int = 0) -> PromptFit:
    """``fit_passages`` for the section-5 chat prompt (attribution and RAG)."""
    return fit_passages(lambda ps: gen.prompt_ids(instruction, ps, input_text), passages,
                        window=window, room=room, min_passages=min_passages)


class WindowLog:
    """Thread-safe tally of a stage's fits, summarised as the manifest's ``prompt_window``."""

    def __init__(self, window: int | None = None):
        self._lock = threading.Lock()
        self.window = window
        self.prompts = 0
        self.cut = 0
        self.ids_cut: list[str] = []
        self.passages_shortened = 0
        self.passages_dropped = 0
        self.max_tokens_before_cut = 0
        self.errors = 0

    def add(self, item_id: str, fit: PromptFit) -> None:
        with self._lock:
            self.prompts += 1
            if fit.window is not None:
                self.window = fit.window if self.window is None else max(self.window, fit.window)
            if fit.cut:
                self.cut += 1
                if item_id not in self.ids_cut:
                    self.ids_cut.append(item_id)
                self.passages_shortened += len(fit.shortened)
                self.passages_dropped += len(fit.dropped)
                self.max_tokens_before_cut = max(self.max_tokens_before_cut, fit.tokens_before)

    def add_error(self, item_id: str) -> None:
        """A prompt that could not be fitted at all (``PromptTooLong``)."""
        with self._lock:
            self.prompts += 1
            self.errors += 1
            if item_id not in self.ids_cut:
                self.ids_cut.append(item_id)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"window": self.window, "rule": RULE, "rule_text": RULE_TEXT,
                    "prompts": self.prompts, "prompts_cut": self.cut,
                    "prompts_too_long": self.errors,
                    "passages_shortened": self.passages_shortened,
                    "passages_dropped": self.passages_dropped,
                    "ids_cut": self.ids_cut[:MAX_IDS_RECORDED],
                    "ids_cut_total": len(self.ids_cut),
                    "max_tokens_before_cut": self.max_tokens_before_cut}
