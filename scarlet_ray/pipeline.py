"""``scarlet run``: every stage in order, each resumable from its manifest.

The pipeline only wires stage commands together through the files of the data contracts: each
stage reads the previous stage's outputs from RUN_DIR and writes its own directory with a
``manifest.json``. A stage whose manifest says ``complete`` is skipped on a rerun; a stage that
was interrupted resumes inside itself (each command skips finished records).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table, read_manifest, write_manifest

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    name: str
    status: str  # done | skipped (already complete) | not built | failed
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Pipeline:
    cfg: Config
    run_dir: Path
    results: list[StageResult] = field(default_factory=list)

    # ------------------------------------------------------------------ paths of the run
    @property
    def seeds(self) -> Path:
        return self.run_dir / "seeds" / "seeds.jsonl"

    @property
    def corpus(self) -> Path:
        return self.run_dir / "corpus" / "corpus.jsonl"

    @property
    def contexts(self) -> Path:
        return self.run_dir / "context" / "contexts.jsonl"

    @property
    def synthesized(self) -> Path:
        return self.run_dir / "synthesis" / "samples.jsonl"

    @property
    def samples(self) -> Path:
        """What attribution runs on: seed samples on their shared context + synthesized ones."""
        return self.run_dir / "samples" / "samples.jsonl"

    @property
    def attributions(self) -> Path:
        return self.run_dir / "attribution" / "attributions"

    @property
    def train_file(self) -> Path:
        return self.run_dir / "labels" / "train.jsonl"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "train" / "model"

    @property
    def gold_model_dir(self) -> Path:
        return self.run_dir / "train_gold" / "model"

    @property
    def heldout_beir(self) -> Path:
        return self.run_dir / "heldout" / "beir"

    @property
    def heldout_samples(self) -> Path:
        return self.run_dir / "heldout" / "samples.jsonl"

    @property
    def heldout_corpus(self) -> Path:
        return self.run_dir / "heldout" / "corpus.jsonl"

    # ------------------------------------------------------------------ running
    def stage(self, name: str, out_dir: Path, fn: Callable[[], int | None]) -> bool:
        """Run one stage unless its manifest says complete; False stops dependents."""
        m = read_manifest(out_dir)
        if m and m.get("status") == "complete":
            self.results.append(StageResult(name, "skipped", 0.0, "complete in manifest"))
            return True
        t0 = time.time()
        try:
            rc = fn()
        except NotBuilt as exc:
            self.results.append(StageResult(name, "not built", 0.0, str(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - reported in the summary, with the traceback
            log.exception("stage %s failed", name)
            self.results.append(StageResult(name, "failed", time.time() - t0,
                                            f"{type(exc).__name__}: {exc}"[:200]))
            return False
        dt = time.time() - t0
        if rc not in (0, None):
            self.results.append(StageResult(name, "failed", dt, f"exit {rc}"))
            return False
        self.results.append(StageResult(name, "done", dt))
        return True

    def command(self, module: str, cfg: Config | None = None, **kwargs: Any) -> int:
        try:
            mod = importlib.import_module(f"scarlet_ray.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"scarlet_ray.commands.{module}":
                raise NotBuilt(f"scarlet {module.replace('_', ' ')} is not built yet") from None
            raise
        return int(mod.main(cfg or self.cfg, argparse.Namespace(**kwargs)) or 0)


class NotBuilt(RuntimeError):
    """A stage's command does not exist yet."""


def _prepare_inputs(p: Pipeline) -> int:
    """Convert the configured seeds and corpora into our JSONL formats."""
    from scarlet_ray.datasets import FORMATS, convert
    from scarlet_ray.records import CorpusPassage, append_errors, read_jsonl, write_jsonl

    d = p.cfg.data
    if not d.seeds:
        raise ValueError("data.seeds is not set in the job config")
    res = convert(d.seeds_format, d.seeds, limit=d.seed_limit, passage_words=d.passage_words)
    seeds_dir = p.seeds.parent
    write_jsonl(p.seeds, res.records)
    if res.skipped:
        append_errors(seeds_dir / "errors.jsonl", res.skipped)
    if len(d.corpus_formats) not in (0, len(d.corpus)):
        raise ValueError("data.corpus_formats must be empty or name one format per data.corpus")
    passages: dict[str, Any] = {}
    skipped = 0
    for i, path in enumerate(d.corpus):
        # no format: our own corpus JSONL (id, title, text)
        fmt = d.corpus_formats[i] if d.corpus_formats else "jsonl"
        if fmt == "jsonl":
            rep = read_jsonl(path, CorpusPassage, on_error="quarantine",
                             errors_path=p.corpus.parent / "errors.jsonl")
            records, n_bad = rep.records, len(rep.errors)
        elif fmt in FORMATS and FORMATS[fmt].kind == "corpus":
            c = convert(fmt, path, passage_words=d.passage_words)
            records, n_bad = c.records, len(c.skipped)
        else:
            raise ValueError(f"data.corpus_formats.{i}: {fmt!r} is not a corpus format "
                             f"(jsonl or one of {sorted(k for k, v in FORMATS.items() if v.kind == 'corpus')})")
        skipped += n_bad
        for rec in records:
            passages.setdefault(rec.id, rec)
    write_jsonl(p.corpus, passages.values())
    write_manifest(seeds_dir, "seeds", config=p.cfg.dump(),
                   counts={"seeds": len(res.records), "skipped": len(res.skipped)})
    write_manifest(p.corpus.parent, "corpus", config=p.cfg.dump(),
                   counts={"passages": len(passages), "skipped": skipped})
    return 0


def _prepare_models(p: Pipeline) -> int:
    from scarlet_ray.models.generator import resolve_generator_path

    resolve_generator_path(p.cfg.models.generator)
    return 0


def _assemble_samples(p: Pipeline) -> int:
    """Attribution input: synthesized samples, plus the seeds on their shared contexts."""
    from scarlet_ray.records import Sample, read_jsonl, write_jsonl

    out: dict[str, Sample] = {}
    sources: dict[str, int] = {}
    inputs = []
    if p.cfg.data.attribute_seeds and p.contexts.exists():
        inputs.append(("seeds", p.contexts))
    if p.synthesized.exists():
        inputs.append(("synthesized", p.synthesized))
    for name, path in inputs:
        recs = read_jsonl(path, Sample, on_error="quarantine",
                          errors_path=p.samples.parent / "errors.jsonl").records
        sources[name] = 0
        for r in recs:
            if r.id not in out and len(r.passages) >= 2:
                out[r.id] = r
                sources[name] += 1
    if not out:
        raise ValueError("no samples to attribute: contexts and synthesis produced nothing")
    write_jsonl(p.samples, out.values())
    write_manifest(p.samples.parent, "samples", config=p.cfg.dump(), counts=sources)
    return 0


def _gold_training(p: Pipeline) -> int:
    """The ceiling: training examples from gold passages of the same samples."""
    from scarlet_ray.records import Sample, TrainingExample, read_jsonl, write_jsonl

    rows = []
    for s in read_jsonl(p.samples, Sample).records:
        gold = set(s.gold_passage_ids)
        pos = [x.text for x in s.passages if x.id in gold]
        neg = [x.text for x in s.passages if x.id not in gold]
        if pos and neg:
            rows.append(TrainingExample(query=s.input, pos=pos, neg=neg, prompt=s.instruction))
    if not rows:
        raise ValueError("no sample has gold passages: cannot train the gold-label ceiling")
    out = p.run_dir / "labels_gold"
    write_jsonl(out / "train.jsonl", rows)
    write_manifest(out, "labels_gold", config=p.cfg.dump(), counts={"examples": len(rows)})
    return 0


def _heldout(p: Pipeline) -> int:
    """Questions after the training seeds -> a BEIR set (their paragraphs) + RAG samples."""
    import csv

    from scarlet_ray.datasets import convert
    from scarlet_ray.records import write_jsonl

    d, ev = p.cfg.data, p.cfg.evaluation
    offset = ev.heldout_offset if ev.heldout_offset is not None else (d.seed_limit or 0)
    res = convert(d.seeds_format, d.seeds, limit=offset + ev.heldout_size,
                  passage_words=d.passage_words)
    held = [s for s in res.records[offset:] if s.passages and s.gold_passage_ids]
    if not held:
        raise ValueError(f"evaluation.heldout_size: no held-out questions after {offset} in "
                         f"{d.seeds} (format {d.seeds_format}) have passages and gold ids")
    beir = p.heldout_beir
    (beir / "qrels").mkdir(parents=True, exist_ok=True)
    corpus: dict[str, dict[str, str]] = {}
    key_to_id: dict[tuple[str, str], str] = {}
    qrels: list[tuple[str, str]] = []
    for s in held:
        for x in s.passages:
            key = (x.title, x.text)
            if key not in key_to_id:
                key_to_id[key] = f"d{len(key_to_id)}"
                corpus[key_to_id[key]] = {"_id": key_to_id[key], "title": x.title, "text": x.text}
            if x.id in s.gold_passage_ids:
                qrels.append((s.id, key_to_id[key]))
    write_jsonl(beir / "corpus.jsonl", corpus.values())
    write_jsonl(beir / "queries.jsonl", [{"_id": s.id, "text": s.input} for s in held])
    with open(beir / "qrels" / "test.tsv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["query-id", "corpus-id", "score"])
        w.writerows((q, c, 1) for q, c in qrels)
    write_jsonl(p.heldout_samples, held)
    write_jsonl(p.heldout_corpus, [{"id": c["_id"], "title": c["title"], "text": c["text"]}
                                   for c in corpus.values()])
    write_manifest(beir.parent, "heldout", config=p.cfg.dump(),
                   counts={"questions": len(held), "passages": len(corpus),
                           "qrels": len(qrels), "offset": offset})
    return 0


def _report(p: Pipeline) -> int:
    from scarlet_ray.evaluation.report import build_report

    path = build_report(p.run_dir, samples_path=p.samples if p.samples.exists() else None)
    print(f"report: {path}")
    return 0


def run_pipeline(cfg: Config, run_dir: str | Path) -> int:
    """Run every configured stage in order; print a summary; non-zero if a stage failed."""
    p = Pipeline(cfg, Path(run_dir))
    p.run_dir.mkdir(parents=True, exist_ok=True)
    (p.run_dir / "config.json").write_text(json.dumps(cfg.dump(), indent=2))
    wanted = set(cfg.stages)
    ev = p.run_dir / "eval"
    models = {"base": cfg.models.retriever, "trained": str(p.model_dir)}
    if cfg.evaluation.train_gold:
        models["gold"] = str(p.gold_model_dir)

    # (name, config.stages key, output dir, action, names of the steps it needs)
    Step = tuple[str, str, Path, Callable[[], int | None], tuple[str, ...]]
    steps: list[Step] = [
        ("inputs", "", p.seeds.parent, lambda: _prepare_inputs(p), ()),
        ("models", "", p.run_dir / "models", lambda: _prepare_models(p), ()),
        ("context", "context", p.contexts.parent, _bind(
            p, "context", seeds=str(p.seeds), corpus=[str(p.corpus)],
            output=str(p.contexts.parent)), ("inputs", "models")),
        ("synthesize", "synthesize", p.synthesized.parent, _bind(
            p, "synthesize", contexts=str(p.contexts), output=str(p.synthesized.parent)),
         ("context",)),
        ("samples", "attribute", p.samples.parent, lambda: _assemble_samples(p), ("context",)),
        ("attribute", "attribute", p.attributions.parent, _bind(
            p, "attribute", input=str(p.samples), output=str(p.attributions.parent)),
         ("samples",)),
        ("label", "label", p.train_file.parent, _bind(
            p, "label", attributions=str(p.attributions), samples=str(p.samples),
            output=str(p.train_file.parent)), ("attribute",)),
        ("train", "train", p.model_dir, _bind(
            p, "train", train=str(p.train_file), output=str(p.model_dir)), ("label",)),
        ("evaluate attribution", "evaluate", ev / "attribution", _bind(
            p, "evaluate_attribution", attributions=str(p.attributions), samples=str(p.samples),
            output=str(ev / "attribution")), ("attribute",)),
    ]
    if cfg.evaluation.train_gold:
        steps += [
            ("labels (gold)", "train", p.run_dir / "labels_gold", lambda: _gold_training(p),
             ("samples",)),
            ("train (gold)", "train", p.gold_model_dir, _bind(
                p, "train", train=str(p.run_dir / "labels_gold" / "train.jsonl"),
                output=str(p.gold_model_dir)), ("labels (gold)",)),
        ]
    trained_by = {"base": "models", "trained": "train", "gold": "train (gold)"}
    if cfg.evaluation.heldout_size:
        steps.append(("held-out set", "evaluate", p.heldout_beir.parent, lambda: _heldout(p),
                      ("inputs",)))
        for variant, model in models.items():
            steps.append((f"retrieval ({variant})", "evaluate", ev / f"retrieval_{variant}",
                          _bind(p, "evaluate_retrieval", model=model, beir=str(p.heldout_beir),
                                split="test", output=str(ev / f"retrieval_{variant}")),
                          ("held-out set", trained_by[variant])))
        # the floor (no retrieval) and ceiling (gold passages) don't depend on the retriever:
        # generate them once, with the base model's run
        only_retrieved = cfg.model_copy(deep=True)
        only_retrieved.evaluation.rag_conditions = ["retrieved"]
        for variant, model in models.items():
            steps.append((f"rag ({variant})", "evaluate", ev / f"rag_{variant}",
                          _bind(p, "evaluate_rag", cfg=None if variant == "base" else
                                only_retrieved, model=model, samples=str(p.heldout_samples),
                                corpus=str(p.heldout_corpus), output=str(ev / f"rag_{variant}")),
                          ("held-out set", trained_by[variant])))
    if cfg.evaluation.beir:
        for variant, model in models.items():
            steps.append((f"beir ({variant})", "evaluate", ev / f"beir_{variant}",
                          _bind(p, "evaluate_retrieval", model=model, beir=cfg.evaluation.beir,
                                split=cfg.evaluation.split, output=str(ev / f"beir_{variant}")),
                          (trained_by[variant],)))

    finished: set[str] = set()
    for name, stage_key, out_dir, fn, deps in steps:
        if stage_key and stage_key not in wanted:
            p.results.append(StageResult(name, "skipped", 0.0, "not in config.stages"))
            finished.add(name)
            continue
        missing = [d for d in deps if d not in finished]
        if missing:
            p.results.append(StageResult(name, "not run", 0.0, f"needs {', '.join(missing)}"))
            continue
        if p.stage(name, out_dir, fn):
            finished.add(name)
    if "evaluate" in wanted:
        p.stage("report", p.run_dir / "report", lambda: _report(p))
    print_table(f"scarlet run: {p.run_dir}",
                [(r.name, r.status, f"{r.seconds:.1f}s", r.detail) for r in p.results],
                headers=("stage", "status", "time", "detail"))
    failed = [r for r in p.results if r.status == "failed"]
    return 1 if failed else 0


def _bind(p: Pipeline, module: str, **kwargs: Any) -> Callable[[], int]:
    return lambda: p.command(module, **kwargs)
