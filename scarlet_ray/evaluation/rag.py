"""Downstream RAG evaluation: retrieve top-k passages, generate greedily, score per task.

Three conditions per sample, all through the same prompt (DESIGN.md section 5):
``retrieved`` (the retriever's top-k from the corpus), ``none`` (no passages: the floor) and
``gold`` (the sample's gold passages: the ceiling; samples without gold ids have no gold row).
Predictions are appended per batch to predictions.jsonl, one line per sample with all conditions,
so a rerun skips finished samples and a crash loses at most the batch in flight. Every prompt is
fitted to the generator's window (prompt + max_new_tokens) by the shared rule of
``prompt.fit_passages``; a row names the passages cut under ``prompt_cut``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from scarlet_ray.evaluation.metrics import references, score
from scarlet_ray.prompt import PromptTooLong, WindowLog, fit_chat_prompt
from scarlet_ray.records import CorpusPassage, Passage, Sample
from scarlet_ray.synthesis.tasks import Task, get_task

log = logging.getLogger(__name__)

CONDITIONS = ("retrieved", "none", "gold")


# ------------------------------------------------------------------ corpus

def load_corpus(spec: str, passage_words: int | None = None) -> list[CorpusPassage]:
    """Our corpus JSONL (id, title, text), or ``FORMAT:PATH`` with a corpus format of
    datasets.FORMATS (e.g. ``beir:DIR``, ``hotpotqa-corpus:FILE``). Bad lines raise with
    file:line: field."""
    from scarlet_ray.datasets import FORMATS, convert
    from scarlet_ray.records import read_jsonl

    fmt, sep, path = spec.partition(":")
    if sep and fmt in FORMATS:
        if FORMATS[fmt].kind != "corpus":
            raise ValueError(f"{spec}: format {fmt!r} is not a corpus format")
        res = convert(fmt, path, passage_words=passage_words)
        if res.skipped:
            raise res.skipped[0]
        passages = list(res.records)  # type: ignore[arg-type]
    else:
        if not Path(spec).exists():
            raise FileNotFoundError(2, "corpus not found", spec)
        passages = read_jsonl(spec, CorpusPassage).records
    if not passages:
        raise ValueError(f"{spec}: corpus is empty")
    return passages  # type: ignore[return-value]


def read_predictions(path: Path, wanted: set[str] | None = None) -> list[dict[str, Any]]:
    """Prediction rows, one per id (the last complete one), restricted to ``wanted`` ids."""
    from scarlet_ray.records import iter_jsonl_objects

    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return []
    for _, obj in iter_jsonl_objects(path):
        if (isinstance(obj, dict) and isinstance(obj.get("id"), str)
                and (wanted is None or obj["id"] in wanted)):
            rows[obj["id"]] = obj
    return list(rows.values())


def retrieval_queries(samples: Sequence[Sample], configured: str | None,
                      extra_tasks: dict[str, Task] | None = None) -> list[str]:
    """What the retriever encodes for each sample at RAG time: ``instruction [SEP] input``
    (formatting.query_text), the instruction being ``configured`` or the sample's task's."""
    from scarlet_ray.formatting import query_instruction, query_text

    return [query_text(query_instruction(configured, s.instruction or get_task(
        s.task, extra_tasks).instruction), s.input) for s in samples]


# ------------------------------------------------------------------ generation

@torch.no_grad()
def generate_batch(gen: Any, prompts: Sequence[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy continuations of tokenised prompts, left-padded into one batch."""
    if not prompts:
        return []
    tok = gen.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    out = gen.model.generate(input_ids=ids.to(gen.device), attention_mask=mask.to(gen.device),
                             max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                             pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    new = out[:, width:]
    return [tok.decode(row, skip_special_tokens=True).strip() for row in new]


def generate_all(gen: Any, prompts: Sequence[list[int]], max_new_tokens: int,
                 batch_size: int) -> list[str]:
    """Generate for many prompts, batching prompts of similar length together (a vLLM
    engine takes them all at once and schedules them itself)."""
    if getattr(gen, "engine", None) is not None:
        from scarlet_ray.models.vllm_engine import generate_ids

        return [r["text"].strip() for r in generate_ids(gen, [list(p) for p in prompts],
                                                        max_tokens=max_new_tokens)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        for i, text in zip(idx, generate_batch(gen, [prompts[i] for i in idx], max_new_tokens),
                           strict=True):
            out[i] = text
    return out


# ------------------------------------------------------------------ evaluation

@dataclass
class RagItem:
    """One sample with the passages each condition gives the generator."""

    sample: Sample
    task: Task
    instruction: str
    contexts: dict[str, list[Passage]]
    max_new_tokens: int = 32  # the task's generation length (or the configured override)


def build_items(samples: Sequence[Sample], retrieved: dict[str, list[Passage]],
                conditions: Sequence[str], extra_tasks: dict[str, Task] | None = None,
                max_new_tokens: int | None = None) -> list[RagItem]:
    """One item per sample; ``max_new_tokens`` overrides every task's own length."""
    items = []
    for s in samples:
        task = get_task(s.task, extra_tasks)
        ctx: dict[str, list[Passage]] = {}
        for c in conditions:
            if c == "retrieved":
                ctx[c] = retrieved[s.id]
            elif c == "none":
                ctx[c] = []
            elif c == "gold":
                if s.gold_passage_ids:
                    by_id = {p.id: p for p in s.passages}
                    ctx[c] = [by_id[g] for g in s.gold_passage_ids]
            else:
                raise ValueError(f"unknown RAG condition {c!r}; known: {list(CONDITIONS)}")
        items.append(RagItem(s, task, s.instruction or task.instruction, ctx,
                             max_new_tokens or task.max_new_tokens))
    return items


class RagRun(NamedTuple):
    """What ``run_items`` did: rows written, and the manifest's ``prompt_window``
    (``prompt.WindowLog.summary()``); a tuple, so ``written, window = run_items(...)``."""

    written: int
    prompt_window: dict[str, Any]


def run_items(gen: Any, items: Sequence[RagItem], *, batch_size: int, chunk: int,
              on_rows: Callable[[list[dict[str, Any]]], None]) -> RagRun:
    """Generate and score every condition of every item; ``on_rows`` gets each finished chunk
    of rows (one per sample) so the caller can append them durably.

    Each prompt is fitted to ``gen.window`` with its item's ``max_new_tokens`` kept free (ELI5's
    512, NQ's 32), prompts of one length are generated together, so a huge
    retrieved passage costs a window's worth of compute instead of minutes; a prompt that does
    not fit even without passages stops the run with one line naming the sample.
    """
    done = 0
    windows = WindowLog(gen.window)
    with tqdm(total=len(items), desc="rag", unit="sample") as bar:
        for s in range(0, len(items), chunk):
            part = items[s:s + chunk]
            jobs: list[tuple[int, str]] = []
            prompts: list[list[int]] = []
            lengths: list[int] = []
            cuts: list[dict[str, list[str]]] = [{} for _ in part]
            for i, it in enumerate(part):
                for cond, passages in it.contexts.items():
                    try:
                        fit = fit_chat_prompt(gen, it.instruction, passages, it.sample.input,
                                              window=gen.window, room=it.max_new_tokens)
                    except PromptTooLong as exc:
                        windows.add_error(it.sample.id)
                        raise PromptTooLong(f"sample {it.sample.id!r} ({cond}): {exc}") from None
                    windows.add(it.sample.id, fit)
                    if fit.cut:
                        cuts[i][cond] = fit.cut
                    jobs.append((i, cond))
                    prompts.append(fit.ids)
                    lengths.append(it.max_new_tokens)
            texts = [""] * len(prompts)
            for n_new in sorted(set(lengths)):
                idx = [j for j, n in enumerate(lengths) if n == n_new]
                for j, t in zip(idx, generate_all(gen, [prompts[j] for j in idx], n_new,
                                                  batch_size), strict=True):
                    texts[j] = t
            rows: list[dict[str, Any]] = []
            for i, it in enumerate(part):
                row = {"id": it.sample.id, "task": it.sample.task, "metric": it.task.metric,
                       "max_new_tokens": it.max_new_tokens,
                       "references": references(it.sample.output, it.sample.answers),
                       "passage_ids": {c: [p.id for p in ps] for c, ps in it.contexts.items()},
                       "predictions": {}, "scores": {}}
                if cuts[i]:
                    row["prompt_cut"] = cuts[i]  # passage ids shortened or dropped, per condition
                rows.append(row)
            for (i, cond), text in zip(jobs, texts, strict=True):
                row = rows[i]
                row["predictions"][cond] = text
                row["scores"][cond] = score(row["metric"], text, row["references"])
            on_rows(rows)
            done += len(rows)
            bar.update(len(part))
    return RagRun(written=done, prompt_window=windows.summary())


def rescore(rows: Sequence[dict[str, Any]]) -> None:
    """Recompute every stored score from its stored prediction, so metrics.json always reflects
    the current metric code, also for predictions resumed from an earlier run."""
    for r in rows:
        r["scores"] = {c: score(r["metric"], p, r["references"])
                       for c, p in r["predictions"].items()}


def summarize(rows: Sequence[dict[str, Any]], conditions: Sequence[str] = CONDITIONS
              ) -> dict[str, Any]:
    """Per condition: overall mean (micro), mean of task means (macro), n, and per task."""
    out: dict[str, Any] = {}
    for c in conditions:
        per_task: dict[str, list[float]] = defaultdict(list)
        metric: dict[str, str] = {}
        for r in rows:
            if c in r["scores"]:
                per_task[r["task"]].append(float(r["scores"][c]))
                metric[r["task"]] = r["metric"]
        allv = [v for vs in per_task.values() for v in vs]
        if not allv:
            continue
        out[c] = {
            "overall": sum(allv) / len(allv),
            "macro": sum(sum(v) / len(v) for v in per_task.values()) / len(per_task),
            "n": len(allv),
            "per_task": {t: {"score": sum(v) / len(v), "n": len(v), "metric": metric[t]}
                         for t, v in sorted(per_task.items())},
        }
    return out
