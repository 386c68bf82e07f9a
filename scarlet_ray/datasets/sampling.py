"""Seed sources: the first ``count`` records of a file, or a seeded uniform sample of them.

The paper draws 1,000 random questions (seed 42) from each KILT train set, files of up to
millions of lines, so a random sample of a JSONL file is taken in passes that hold only the
picks: pass 1 counts the records by a byte scan (no JSON parsing), a seeded permutation picks
indices, pass 2 converts only those.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scarlet_ray.datasets import FORMATS
from scarlet_ray.datasets.base import Converted, count_jsonl_records, is_json_array, load_json
from scarlet_ray.datasets.kilt import resolve_task
from scarlet_ray.records import Sample

Sampling = Literal["first", "random"]


def count_records(path: str | Path) -> int | None:
    """The number of records of a JSONL file (its non-blank lines, counted without parsing);
    None where no cheap count exists (a JSON array must be parsed whole; a folder)."""
    p = Path(path)
    if p.is_dir() or is_json_array(p):
        return None
    return count_jsonl_records(p)


def seeded_permutation(n: int, seed: int) -> np.ndarray:
    """``numpy.random.default_rng(seed).permutation(n)``, in 4-byte integers where they fit
    (the same shuffle, half the memory: 24 MB for a 6-million-line file)."""
    order = np.arange(n, dtype=np.uint32 if n < 2**32 else np.int64)
    np.random.default_rng(seed).shuffle(order)
    return order


def read_source(fmt: str, path: str | Path, *, count: int | None = None,
                sampling: Sampling = "first", seed: int = 42, task: str | None = None,
                passage_words: int | None = None) -> Converted:
    """Read ``count`` records of ``path`` (format ``fmt``): the first ones, or a seeded sample.

    ``first``: the first ``count`` converted records, as a reader's ``limit``.
    ``random``: a uniform sample of ``count`` source records, the same for the same (file,
    count, seed), in file order. A picked record that is bad is quarantined (in ``skipped``
    with its reason) and replaced by the next index of the permutation, so ``count`` records
    come back whenever the file holds that many good ones; where it holds fewer, all its good
    records come back: ``len(records) < count`` is how a caller sees the shortfall, and
    ``skipped`` says why. Each source record makes one seed or sample; a corpus format
    counts pages/lines picked, each giving its passages.

    Memory: JSONL is streamed (the picks, plus 4 bytes a record for the permutation). A JSON
    array cannot be streamed without loading: it is loaded (once to count, once to convert).
    Formats whose reader takes no ``select`` (a single JSON object such as SQuAD, a BEIR folder,
    TSV) are converted whole and the sample drawn from the converted records.

    ``task`` sets each record's task and instruction (readers that take a task get it passed;
    for the others the records are updated); an unknown task is a ValueError naming it.
    """
    try:
        spec = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}") from None
    if sampling not in ("first", "random"):
        raise ValueError(f"sampling must be 'first' or 'random', got {sampling!r}")
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    params = inspect.signature(spec.reader).parameters
    kwargs: dict[str, Any] = {"passage_words": passage_words}
    if task is not None:
        resolve_task(task)
        if "task" in params:
            kwargs["task"] = task
        elif spec.kind == "corpus":
            raise ValueError(f"format {fmt!r} is a corpus: it takes no task (got {task!r})")
    if count is None:
        res = spec.reader(str(path), **kwargs)
    elif sampling == "first":
        res = spec.reader(str(path), limit=count, **kwargs)
    elif "select" in params and Path(path).is_file():
        res = _sample_streamed(spec.reader, Path(path), count, seed, kwargs)
    else:
        res = _sample_converted(spec.reader(str(path), **kwargs), count, seed)
    if task is not None and "task" not in params:
        _set_task(res, task)
    return res


def _sample_streamed(reader: Callable[..., Converted], path: Path, count: int, seed: int,
                     kwargs: dict[str, Any]) -> Converted:
    """Convert the shortest prefix of the permutation that holds ``count`` good records.

    Each round converts the prefix picked so far and widens it by the number of bad picks
    (every picked record is either kept or has one entry in ``skipped``: ``convert_each``'s
    rule), so a round is one more scan of the file only when a pick was bad.
    """
    n = count_records(path)
    if n is None:  # a JSON array: its length needs the parse that the reader repeats
        n = len(load_json(path))
    order = seeded_permutation(n, seed)
    m = min(count, n)
    while True:
        res = reader(str(path), select=set(order[:m].tolist()), **kwargs)
        good = m - len(res.skipped)
        if good >= count or m >= n:
            return res
        m = min(n, m + count - good)


def _sample_converted(res: Converted, count: int, seed: int) -> Converted:
    """A seeded sample of already-converted records, kept in file order."""
    if len(res.records) > count:
        keep = np.sort(seeded_permutation(len(res.records), seed)[:count])
        res.records = [res.records[i] for i in keep.tolist()]
    return res


def _set_task(res: Converted, task: str) -> None:
    spec = resolve_task(task)
    res.records = [r.model_copy(update={"task": spec.name, "instruction": spec.instruction})
                   if isinstance(r, Sample) else r for r in res.records]
