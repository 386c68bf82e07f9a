"""``scarlet run``: every stage in order, each resumable, then the report.

The pipeline wires the stage functions (``run(cfg, inputs, out, options)``, the same ones the
``scarlet`` subcommands call) together through the files of the data contracts, laid out by
``layout.RunLayout``. A stage whose manifest says ``complete`` with the same fingerprint is
skipped; any other stage is called, and it resumes inside itself (finished records are skipped)
or refuses, in one line, a folder written with other settings.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config
from scarlet_ray.errors import one_line
from scarlet_ray.layout import RunLayout
from scarlet_ray.manifest import print_table, read_manifest
from scarlet_ray.stagedir import StageOptions, StageRun, fingerprint, stage_settings

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    name: str
    status: str  # done | skipped (already complete) | failed | not run
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Pipeline:
    cfg: Config
    run_dir: Path
    options: StageOptions = field(default_factory=StageOptions)
    results: list[StageResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lay = RunLayout(self.run_dir)

    def stage(self, name: str, out_dir: Path, stage_key: str, fn: Callable[[], Any],
              args: dict[str, Any] | None = None) -> bool:
        """Run one step unless it completed with the same settings; False stops dependents."""
        m = read_manifest(out_dir)
        if m and m.get("status") == "complete" and m.get("fingerprint") == fingerprint(
                stage_settings(stage_key, self.cfg.dump(), args)):
            self.results.append(StageResult(name, "skipped", 0.0, "complete in manifest"))
            return True
        return self.call(name, fn)

    def call(self, name: str, fn: Callable[[], Any]) -> bool:
        """Run one step and record how it ended; user errors are one line, bugs are logged."""
        t0 = time.time()
        try:
            res = fn()
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            line = one_line(exc)
            if line is None:
                log.exception("stage %s failed", name)
            self.results.append(StageResult(name, "failed", time.time() - t0,
                                            line[0] if line else f"{type(exc).__name__}: {exc}"))
            return False
        dt = time.time() - t0
        code = getattr(res, "exit_code", res)
        if code not in (0, None):
            self.results.append(StageResult(name, "failed", dt,
                                            getattr(res, "message", "") or f"exit {code}"))
            return False
        self.results.append(StageResult(name, "done", dt))
        return True


def _step(p: Pipeline, folder: Path, stage: str, outputs: tuple[str, ...]) -> StageRun:
    """A StageRun for the pipeline's own steps (inputs, samples, gold labels, held-out set)."""
    return StageRun(folder, stage, p.cfg.dump(), outputs, p.options)


def _prepare_inputs(p: Pipeline) -> int:
    """Convert the configured seeds and corpora into our JSONL formats."""
    from scarlet_ray.datasets import FORMATS, convert
    from scarlet_ray.errors import UsageError
    from scarlet_ray.records import CorpusPassage, read_jsonl, write_jsonl

    d = p.cfg.data
    if not d.seeds:
        raise UsageError("data.seeds is not set in the job config")
    if len(d.corpus_formats) not in (0, len(d.corpus)):
        raise UsageError("data.corpus_formats must be empty or name one format per data.corpus")
    with _step(p, p.lay.corpus.parent, "inputs", ("corpus.jsonl",)) as st:
        passages: dict[str, Any] = {}
        skipped = 0
        for i, path in enumerate(d.corpus):
            fmt = d.corpus_formats[i] if d.corpus_formats else "jsonl"  # ours: id, title, text
            if fmt == "jsonl":
                rep = read_jsonl(path, CorpusPassage, on_error="quarantine")
                records, bad = rep.records, rep.errors
            elif fmt in FORMATS and FORMATS[fmt].kind == "corpus":
                c = convert(fmt, path, passage_words=d.passage_words)
                records, bad = c.records, c.skipped
            else:
                corpus_fmts = sorted(k for k, v in FORMATS.items() if v.kind == "corpus")
                raise UsageError(f"data.corpus_formats.{i}: {fmt!r} is not a corpus format "
                                 f"(jsonl or one of {corpus_fmts})")
            st.errors.add(bad, stage="read")
            skipped += len(bad)
            for rec in records:
                passages.setdefault(rec.id, rec)
        st.require_records(len(passages), ", ".join(d.corpus) or "data.corpus", skipped)
        write_jsonl(p.lay.corpus, passages.values())
        st.counts.update(passages=len(passages), skipped=skipped)
    with _step(p, p.lay.seeds.parent, "inputs", ("seeds.jsonl",)) as st:
        res = convert(d.seeds_format, d.seeds, limit=d.seed_limit, passage_words=d.passage_words)
        st.errors.add(res.skipped, stage="read")
        st.require_records(len(res.records), d.seeds, len(res.skipped))
        write_jsonl(p.lay.seeds, res.records)
        st.counts.update(seeds=len(res.records), skipped=len(res.skipped))
    return 0


def _prepare_models(p: Pipeline) -> int:
    from scarlet_ray.models.generator import resolve_generator_path

    resolve_generator_path(p.cfg.models.generator)
    return 0


def _assemble_samples(p: Pipeline) -> int:
    """Attribution input: synthesized samples, plus the seeds on their shared contexts."""
    from scarlet_ray.records import Sample, read_jsonl, write_jsonl

    with _step(p, p.lay.samples.parent, "samples", ("samples.jsonl",)) as st:
        st.errors.path.unlink(missing_ok=True)  # rewritten whole
        out: dict[str, Sample] = {}
        inputs = []
        if p.cfg.data.attribute_seeds and p.lay.contexts.exists():
            inputs.append(("seeds", p.lay.contexts))
        if p.lay.synthesized.exists():
            inputs.append(("synthesized", p.lay.synthesized))
        for name, path in inputs:
            rep = read_jsonl(path, Sample, on_error="quarantine")
            st.errors.add(rep.errors, stage="read")
            st.counts[name] = 0
            for r in rep.records:
                if r.id not in out and len(r.passages) >= 2:
                    out[r.id] = r
                    st.counts[name] += 1
        st.require_records(len(out), "contexts and synthesis")
        write_jsonl(p.lay.samples, out.values())
    return 0


def _gold_training(p: Pipeline) -> int:
    """The ceiling: training examples from gold passages of the same samples."""
    from scarlet_ray.formatting import passage_text
    from scarlet_ray.records import Sample, TrainingExample, read_jsonl, write_jsonl

    with _step(p, p.lay.gold_train_file.parent, "labels_gold", ("train.jsonl",)) as st:
        rows = []
        for s in read_jsonl(p.lay.samples, Sample).records:
            gold = set(s.gold_passage_ids)
            pos = [passage_text(x.title, x.text) for x in s.passages if x.id in gold]
            neg = [passage_text(x.title, x.text) for x in s.passages if x.id not in gold]
            if pos and neg:
                rows.append(TrainingExample(query=s.input, pos=pos, neg=neg,
                                            prompt=s.instruction))
        if not rows:
            from scarlet_ray.errors import EmptyInput

            raise EmptyInput(f"{p.lay.samples}: no sample has gold passages: cannot train the "
                             "gold-label ceiling (set evaluation.train_gold=false)")
        write_jsonl(p.lay.gold_train_file, rows)
        st.counts["examples"] = len(rows)
    return 0


def _heldout(p: Pipeline) -> int:
    """Questions after the training seeds -> a BEIR set (their paragraphs) + RAG samples."""
    import csv

    from scarlet_ray.datasets import convert
    from scarlet_ray.errors import EmptyInput
    from scarlet_ray.records import write_jsonl

    d, ev = p.cfg.data, p.cfg.evaluation
    offset = ev.heldout_offset if ev.heldout_offset is not None else (d.seed_limit or 0)
    with _step(p, p.lay.heldout_beir.parent, "heldout",
               ("beir", "samples.jsonl", "corpus.jsonl")) as st:
        res = convert(d.seeds_format, d.seeds, limit=offset + ev.heldout_size,
                      passage_words=d.passage_words)
        held = [s for s in res.records[offset:] if s.passages and s.gold_passage_ids]
        if not held:
            raise EmptyInput(f"evaluation.heldout_size: no held-out questions after {offset} in "
                             f"{d.seeds} (format {d.seeds_format}) have passages and gold ids")
        beir = p.lay.heldout_beir
        (beir / "qrels").mkdir(parents=True, exist_ok=True)
        corpus: dict[str, dict[str, str]] = {}
        key_to_id: dict[tuple[str, str], str] = {}
        qrels: list[tuple[str, str]] = []
        for s in held:
            for x in s.passages:
                key = (x.title, x.text)
                if key not in key_to_id:
                    key_to_id[key] = f"d{len(key_to_id)}"
                    corpus[key_to_id[key]] = {"_id": key_to_id[key], "title": x.title,
                                              "text": x.text}
                if x.id in s.gold_passage_ids:
                    qrels.append((s.id, key_to_id[key]))
        write_jsonl(beir / "corpus.jsonl", corpus.values())
        write_jsonl(beir / "queries.jsonl", [{"_id": s.id, "text": s.input} for s in held])
        tmp = beir / "qrels" / "test.tsv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, delimiter="\t")
            w.writerow(["query-id", "corpus-id", "score"])
            w.writerows((q, c, 1) for q, c in dict.fromkeys(qrels))
        tmp.replace(beir / "qrels" / "test.tsv")
        write_jsonl(p.lay.heldout_samples, held)
        write_jsonl(p.lay.heldout_corpus, [{"id": c["_id"], "title": c["title"],
                                            "text": c["text"]} for c in corpus.values()])
        st.counts.update(questions=len(held), passages=len(corpus), qrels=len(qrels),
                         offset=offset)
    return 0


def _report(p: Pipeline) -> int:
    from scarlet_ray.evaluation.report import build_report

    path = build_report(p.run_dir, samples_path=p.lay.samples if p.lay.samples.exists() else None)
    print(f"report: {path}")
    return 0


# (name, config.stages key, output dir, stage name for the fingerprint, action, needs, args)
Step = tuple[str, str, Path, str, Callable[[], Any], tuple[str, ...], dict[str, Any] | None]


def _steps(p: Pipeline) -> list[Step]:
    from scarlet_ray.attribution import label_stage
    from scarlet_ray.attribution import stage as attribution_stage
    from scarlet_ray.context import stage as context_stage
    from scarlet_ray.evaluation import stages as evaluation
    from scarlet_ray.synthesis.synthesize import run_synthesis
    from scarlet_ray.training import stage as training_stage

    cfg, lay, opt = p.cfg, p.lay, p.options
    steps: list[Step] = [
        ("inputs", "", lay.seeds.parent, "inputs", lambda: _prepare_inputs(p), (), None),
        ("models", "", lay.root / "models", "inputs", lambda: _prepare_models(p), (), None),
        ("context", "context", lay.contexts.parent, "context", lambda: context_stage.run(
            cfg, lay.seeds, [str(lay.corpus)], lay.contexts.parent, opt), ("inputs", "models"),
         None),
        ("synthesize", "synthesize", lay.synthesized.parent, "synthesize", lambda: run_synthesis(
            cfg, lay.contexts, lay.synthesized.parent, options=opt), ("context",), None),
        ("samples", "attribute", lay.samples.parent, "samples", lambda: _assemble_samples(p),
         ("context",), None),
        ("attribute", "attribute", lay.attributions.parent, "attribute",
         lambda: attribution_stage.run(cfg, lay.samples, lay.attributions.parent, opt),
         ("samples",), None),
        ("label", "label", lay.train_file.parent, "label", lambda: label_stage.run(
            cfg, lay.attributions, lay.samples, lay.train_file.parent, opt), ("attribute",),
         None),
        ("train", "train", lay.model_dir, "train", lambda: training_stage.run(
            cfg, lay.train_file, lay.model_dir, opt), ("label",), None),
        ("evaluate attribution", "evaluate", lay.eval_attribution, "evaluate_attribution",
         lambda: evaluation.attribution(cfg, lay.attributions, lay.samples, lay.eval_attribution,
                                        opt), ("attribute",), None),
    ]
    models = {"base": cfg.models.retriever, "trained": str(lay.model_dir)}
    if cfg.evaluation.train_gold:
        models["gold"] = str(lay.gold_model_dir)
        steps += [
            ("labels (gold)", "train", lay.gold_train_file.parent, "labels_gold",
             lambda: _gold_training(p), ("samples",), None),
            ("train (gold)", "train", lay.gold_model_dir, "train", lambda: training_stage.run(
                cfg, lay.gold_train_file, lay.gold_model_dir, opt), ("labels (gold)",), None),
        ]
    trained_by = {"base": "models", "trained": "train", "gold": "train (gold)"}
    if cfg.evaluation.heldout_size:
        steps.append(("held-out set", "evaluate", lay.heldout_beir.parent, "heldout",
                      lambda: _heldout(p), ("inputs",), None))
        for variant, model in models.items():
            out = lay.eval_run("retrieval", variant)
            steps.append((f"retrieval ({variant})", "evaluate", out, "evaluate_retrieval",
                          _bind(evaluation.retrieval, cfg, model, lay.heldout_beir, "test", out,
                                opt), ("held-out set", trained_by[variant]),
                          {"model": model, "split": "test"}))
        # the floor (no retrieval) and ceiling (gold passages) don't depend on the retriever:
        # generate them once, with the base model's run
        only_retrieved = cfg.model_copy(deep=True)
        only_retrieved.evaluation.rag_conditions = ["retrieved"]
        for variant, model in models.items():
            c = cfg if variant == "base" else only_retrieved
            out = lay.eval_run("rag", variant)
            steps.append((f"rag ({variant})", "evaluate", out, "evaluate_rag",
                          _bind(evaluation.rag, c, model, lay.heldout_samples, lay.heldout_corpus,
                                out, opt), ("held-out set", trained_by[variant]),
                          {"model": model, "corpus": str(lay.heldout_corpus),
                           "samples": str(lay.heldout_samples),
                           "conditions": list(dict.fromkeys(c.evaluation.rag_conditions))}))
    if cfg.evaluation.beir:
        for variant, model in models.items():
            out = lay.eval_run("beir", variant)
            steps.append((f"beir ({variant})", "evaluate", out, "evaluate_retrieval",
                          _bind(evaluation.retrieval, cfg, model, cfg.evaluation.beir,
                                cfg.evaluation.split, out, opt), (trained_by[variant],),
                          {"model": model, "split": cfg.evaluation.split}))
    return steps


def _bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)


def run_pipeline(cfg: Config, run_dir: str | Path, options: StageOptions | None = None) -> int:
    """Run every configured stage in order; print a summary; non-zero if a stage failed."""
    p = Pipeline(cfg, Path(run_dir), options or StageOptions())
    if p.run_dir.exists() and not p.run_dir.is_dir():
        from scarlet_ray.errors import UsageError

        raise UsageError(f"{p.run_dir}: exists and is not a directory (--output takes a folder)")
    p.run_dir.mkdir(parents=True, exist_ok=True)
    from scarlet_ray.redact import redact_obj

    (p.run_dir / "config.json").write_text(json.dumps(redact_obj(cfg.dump()), indent=2))
    wanted = set(cfg.stages)
    finished: set[str] = set()
    for name, stage_key, out_dir, fp_stage, fn, deps, args in _steps(p):
        if stage_key and stage_key not in wanted:
            p.results.append(StageResult(name, "skipped", 0.0, "not in config.stages"))
            finished.add(name)
            continue
        missing = [d for d in deps if d not in finished]
        if missing:
            p.results.append(StageResult(name, "not run", 0.0, f"needs {', '.join(missing)}"))
            continue
        # models: no folder of its own, always cheap
        ok = _plain(p, name, fn) if name == "models" else p.stage(name, out_dir, fp_stage, fn,
                                                                  args)
        if ok:
            finished.add(name)
    if "evaluate" in wanted:
        _plain(p, "report", lambda: _report(p))
    print_table(f"scarlet run: {p.run_dir}",
                [(r.name, r.status, f"{r.seconds:.1f}s", r.detail) for r in p.results],
                headers=("stage", "status", "time", "detail"))
    failed = [r for r in p.results if r.status == "failed"]
    return 1 if failed else 0


def _plain(p: Pipeline, name: str, fn: Callable[[], Any]) -> bool:
    """A step without an output folder of its own (models, report): always run."""
    return p.call(name, fn)
