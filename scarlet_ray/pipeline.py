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
        dt = time.time() - t0
        if rc not in (0, None):
            self.results.append(StageResult(name, "failed", dt, f"exit {rc}"))
            return False
        self.results.append(StageResult(name, "done", dt))
        return True

    def command(self, module: str, **kwargs: Any) -> int:
        try:
            mod = importlib.import_module(f"scarlet_ray.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"scarlet_ray.commands.{module}":
                raise NotBuilt(f"scarlet {module.replace('_', ' ')} is not built yet") from None
            raise
        return int(mod.main(self.cfg, argparse.Namespace(**kwargs)) or 0)


class NotBuilt(RuntimeError):
    """A stage's command does not exist yet."""


def _prepare_inputs(p: Pipeline) -> int:
    """Convert the configured seeds and corpora into our JSONL formats."""
    from scarlet_ray.datasets import FORMATS, convert
    from scarlet_ray.records import append_errors, write_jsonl

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
        fmt = d.corpus_formats[i] if d.corpus_formats else "flashrag-corpus"
        if FORMATS[fmt].kind != "corpus":
            raise ValueError(f"data.corpus_formats.{i}: {fmt} is not a corpus format")
        c = convert(fmt, path, passage_words=d.passage_words)
        skipped += len(c.skipped)
        for rec in c.records:
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


def run_pipeline(cfg: Config, run_dir: str | Path) -> int:
    """Run every configured stage in order; print a summary; non-zero if a stage failed."""
    p = Pipeline(cfg, Path(run_dir))
    p.run_dir.mkdir(parents=True, exist_ok=True)
    (p.run_dir / "config.json").write_text(json.dumps(cfg.dump(), indent=2))
    ok = p.stage("inputs", p.seeds.parent, lambda: _prepare_inputs(p))
    ok = ok and p.stage("models", p.run_dir / "models", lambda: _prepare_models(p))
    wanted = set(cfg.stages)
    steps: list[tuple[str, Path, Callable[[], int]]] = [
        ("context", p.contexts.parent, lambda: p.command(
            "context", seeds=str(p.seeds), corpus=[str(p.corpus)], output=str(p.contexts.parent))),
    ]
    for name, out_dir, fn in steps:
        if not ok:
            break
        if name not in wanted:
            p.results.append(StageResult(name, "skipped", 0.0, "not in config.stages"))
            continue
        ok = p.stage(name, out_dir, fn)
    print_table(f"scarlet run: {p.run_dir}",
                [(r.name, r.status, f"{r.seconds:.1f}s", r.detail) for r in p.results],
                headers=("stage", "status", "time", "detail"))
    failed = [r for r in p.results if r.status == "failed"]
    return 1 if failed else 0
