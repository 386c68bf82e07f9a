"""Evaluation sets, kept apart from training: read, checked for leakage, given their corpora.

Every set of ``evaluation.sets`` is read on its own (never a slice of the training seeds unless
its ``offset`` says so), checked against the questions the run trained on (the seeds and every
attributed sample) by id and by normalised text, and written as ``samples.jsonl`` + its closed
``corpus.jsonl`` (+ a BEIR folder where its samples name gold passages). ``pooled`` unites every
set's corpus. Pure functions over files: the pipeline calls them inside a ``StageRun``.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config, EvalSet, SeedSource
from scarlet_ray.errors import UsageError
from scarlet_ray.records import CorpusPassage, RecordError, Sample


def normalize_question(text: str) -> str:
    """The text form two questions are compared in (SQuAD normalisation: case, punctuation,
    articles, spacing), so "Who wrote Dune?" and "who wrote dune" are one question."""
    from scarlet_ray.evaluation.metrics import normalize_answer

    return normalize_answer(text)


# ------------------------------------------------------------------ leakage
@dataclass
class TrainedOn:
    """The questions a run trained on: ids and normalised texts (text -> one id)."""

    ids: set[str] = field(default_factory=set)
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, sample_id: str, text: str) -> None:
        self.ids.add(sample_id)
        self.texts.setdefault(normalize_question(text), sample_id)

    @classmethod
    def from_files(cls, *paths: Path) -> TrainedOn:
        """Ids and inputs of every record of the given sample files that exist (the seeds, and
        the attributed samples: seeds on their contexts plus synthesized questions)."""
        from scarlet_ray.records import iter_jsonl_objects

        out = cls()
        for p in paths:
            if not p.exists():
                continue
            for _, obj in iter_jsonl_objects(p):
                if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                    out.add(obj["id"], str(obj.get("input", "")))
        return out


@dataclass
class Leak:
    by_id: list[str]
    by_text: list[tuple[str, str]]  # (eval id, training id)

    def __bool__(self) -> bool:
        return bool(self.by_id or self.by_text)

    def line(self, where: str, n: int) -> str:
        parts = []
        if self.by_id:
            parts.append(f"{len(self.by_id)} by id (e.g. {self.by_id[0]!r})")
        if self.by_text:
            e, t = self.by_text[0]
            parts.append(f"{len(self.by_text)} by normalised text (e.g. {e!r} = training {t!r})")
        return (f"{where}: {len(set(self.by_id) | {e for e, _ in self.by_text})} of its {n} "
                f"questions were trained on: {'; '.join(parts)}; evaluate on questions the run "
                "did not train on (another file, or an offset past the seeds)")


def find_leaks(questions: Iterable[tuple[str, str]], trained: TrainedOn) -> Leak:
    """Evaluation (id, text) pairs the run trained on, by id and by normalised text."""
    by_id, by_text = [], []
    for qid, text in questions:
        if qid in trained.ids:
            by_id.append(qid)
        else:
            hit = trained.texts.get(normalize_question(text))
            if hit is not None:
                by_text.append((qid, hit))
    return Leak(by_id, by_text)


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def static_leaks(cfg: Config) -> list[str]:
    """Leakage visible from the config alone (the dry run and the run's start check it): a set
    that reads a seeds file must say where the held-out part starts, past the seeds taken."""
    problems = []
    sources = cfg.data.seed_sources()
    for i, es in enumerate(cfg.evaluation.sets):
        for src in sources:
            if not _same_file(es.path, src.path):
                continue
            where = f"evaluation.sets.{i} ({es.name})"
            if es.offset is None:
                problems.append(f"{where}: reads the training seeds file {src.path} without an "
                                "explicit offset: it would evaluate on training questions")
            elif src.sampling == "random":
                problems.append(f"{where}: the seeds are a random sample of {src.path}, so no "
                                "offset in that file is held out; evaluate on another file")
            elif src.count is None or es.offset < src.count:
                took = "every record" if src.count is None else f"the first {src.count}"
                problems.append(f"{where}: offset {es.offset} is inside the seeds (training "
                                f"takes {took} of {src.path})")
    return problems


# ------------------------------------------------------------------ reading a set
def read_set(es: EvalSet, passage_words: int | None) -> Any:
    """The set's samples (``datasets.sampling.read_source``), after ``offset`` records."""
    from scarlet_ray.datasets.sampling import read_source

    if es.offset:
        if es.sampling != "first":
            raise UsageError(f"evaluation set {es.name}: offset works with sampling: first")
        count = es.offset + es.count if es.count is not None else None
        res = read_source(es.format, es.path, count=count, sampling="first", seed=es.seed,
                          task=es.task, passage_words=passage_words)
        res.records = res.records[es.offset:]
        return res
    return read_source(es.format, es.path, count=es.count, sampling=es.sampling, seed=es.seed,
                       task=es.task, passage_words=passage_words)


def passages_of(samples: Iterable[Sample]) -> tuple[list[CorpusPassage], list[tuple[str, str]]]:
    """A closed corpus from the passages the samples carry (one id per distinct title+text:
    HotpotQA repeats a paragraph under each question that has it) and the qrels of their gold."""
    key_to_id: dict[tuple[str, str], str] = {}
    corpus: list[CorpusPassage] = []
    qrels: list[tuple[str, str]] = []
    for s in samples:
        gold = set(s.gold_passage_ids)
        for x in s.passages:
            key = (x.title, x.text)
            if key not in key_to_id:
                key_to_id[key] = f"d{len(key_to_id)}"
                corpus.append(CorpusPassage(id=key_to_id[key], title=x.title, text=x.text))
            if x.id in gold:
                qrels.append((s.id, key_to_id[key]))
    return corpus, list(dict.fromkeys(qrels))


def write_beir(out: Path, corpus_path: Path, samples: list[Sample],
               qrels: list[tuple[str, str]]) -> None:
    """A BEIR folder (corpus, queries, qrels/test.tsv) for retrieval metrics on the set."""
    import shutil

    from scarlet_ray.records import iter_jsonl_objects, write_jsonl

    (out / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "corpus.jsonl", ({"_id": o["id"], "title": o.get("title", ""),
                                        "text": o["text"]}
                                       for _, o in iter_jsonl_objects(corpus_path)
                                       if isinstance(o, dict)))
    judged = {q for q, _ in qrels}
    write_jsonl(out / "queries.jsonl", [{"_id": s.id, "text": s.input} for s in samples
                                        if s.id in judged])
    tmp = out / "qrels" / "test.tsv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["query-id", "corpus-id", "score"])
        w.writerows((q, c, 1) for q, c in qrels)
    tmp.replace(out / "qrels" / "test.tsv")
    if not qrels:
        shutil.rmtree(out)


def stream_corpora(files: list[str], formats: list[str], passage_words: int | None,
                   errors: list[RecordError], where: str) -> Iterator[CorpusPassage]:
    """Passages of several corpus files, the first of each id kept; bad records and repeated
    ids go to ``errors`` (never dropped silently)."""
    from scarlet_ray.datasets.stream import UNIQUE_IDS, iter_corpus

    if formats and len(formats) != len(files):
        raise UsageError(f"{where}: corpus_formats must be empty or name one format per corpus")
    fmts = formats or ["jsonl"] * len(files)
    # one file of a format whose reader already refuses repeated ids (KILT Wikipedia: 30 million
    # passages) needs no id set here, so memory stays flat
    track = len(files) > 1 or any(f not in UNIQUE_IDS for f in fmts)
    seen: set[str] = set()
    for i, path in enumerate(files):
        if not Path(path).exists():
            raise UsageError(f"{path}: corpus not found ({where})")
        for rec in iter_corpus(fmts[i], path, passage_words,
                               where=f"{where}.corpus_formats.{i}"):
            if isinstance(rec, RecordError):
                errors.append(rec)
            elif not track:
                yield rec
            elif rec.id in seen:
                errors.append(RecordError(path, "id", f"duplicate id {rec.id!r} (an earlier "
                                          "corpus file has it)", rec.id))
            else:
                seen.add(rec.id)
                yield rec


def pooled(corpora: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """Every set's corpus as one, ids prefixed with the set (``set/id``); a passage that several
    sets hold (same title and text) is kept once."""
    from scarlet_ray.records import iter_jsonl_objects

    seen: set[bytes] = set()
    for name, path in corpora.items():
        for _, o in iter_jsonl_objects(path):
            if not isinstance(o, dict):
                continue
            h = hashlib.blake2b(f"{o.get('title', '')}\x00{o['text']}".encode(),
                                digest_size=16).digest()
            if h in seen:
                continue
            seen.add(h)
            yield {"id": f"{name}/{o['id']}", "title": o.get("title", ""), "text": o["text"]}


def seed_line(src: SeedSource) -> str:
    n = "all" if src.count is None else f"{src.count:,}"
    return f"{n} ({src.sampling}{', seed ' + str(src.seed) if src.sampling == 'random' else ''})"
