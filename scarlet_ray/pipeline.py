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
from scarlet_ray.errors import UsageError, one_line
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
        if stage_key and m and m.get("status") == "complete" and m.get(
                "fingerprint") == fingerprint(stage_settings(stage_key, self.cfg.dump(), args)):
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
        if isinstance(res, Skip):
            self.results.append(StageResult(name, "skipped", dt, str(res)))
            return True
        code = getattr(res, "exit_code", res)
        if code not in (0, None):
            self.results.append(StageResult(name, "failed", dt,
                                            getattr(res, "message", "") or f"exit {code}"))
            return False
        self.results.append(StageResult(name, "done", dt))
        return True


def _step(p: Pipeline, folder: Path, stage: str, outputs: tuple[str, ...],
          args: dict[str, Any] | None = None) -> StageRun:
    """A StageRun for the pipeline's own steps (inputs, samples, gold labels, eval sets)."""
    return StageRun(folder, stage, p.cfg.dump(), outputs, p.options, args=args)


def _prepare_inputs(p: Pipeline) -> int:
    """The seed mix and the corpora, converted into our JSONL formats (streamed)."""
    from collections import Counter

    from scarlet_ray.datasets.sampling import read_source
    from scarlet_ray.evalsets import stream_corpora
    from scarlet_ray.records import RecordError, write_jsonl

    d = p.cfg.data
    sources = d.seed_sources()
    if not sources:
        raise UsageError("data.seeds is not set in the job config")
    with _step(p, p.lay.corpus.parent, "inputs", ("corpus.jsonl",)) as st:
        bad: list[RecordError] = []
        n = write_jsonl(p.lay.corpus, stream_corpora(d.corpus, d.corpus_formats,
                                                     d.passage_words, bad, "data"))
        st.errors.add(bad, stage="read")
        st.require_records(n, ", ".join(d.corpus) or "data.corpus", len(bad))
        st.counts.update(passages=n, skipped=len(bad))
    with _step(p, p.lay.seeds.parent, "inputs", ("seeds.jsonl",)) as st:
        records: dict[str, Any] = {}
        per_source = []
        for i, src in enumerate(sources):
            try:
                res = read_source(src.format, src.path, count=src.count, sampling=src.sampling,
                                  seed=src.seed, task=src.task, passage_words=d.passage_words)
            except (KeyError, ValueError) as exc:
                if isinstance(exc, RecordError):
                    raise
                raise UsageError(f"data.seeds.{i}: {exc.args[0] if exc.args else exc}") from None
            st.errors.add(res.skipped, stage="read")
            kept = 0
            for r in res.records:
                if r.id in records:  # the same question from two sources: kept once, said so
                    st.errors.add([RecordError(src.path, "id", "duplicate id across seed "
                                               "sources (kept the first)", r.id)], stage="read")
                    continue
                records[r.id] = r
                kept += 1
            per_source.append({"path": src.path, "format": src.format, "task": src.task,
                               "count": src.count, "sampling": src.sampling, "seed": src.seed,
                               "read": kept, "skipped": len(res.skipped)})
        st.require_records(len(records), ", ".join(s.path for s in sources),
                           sum(x["skipped"] for x in per_source))
        write_jsonl(p.lay.seeds, records.values())
        by_task = Counter(r.task for r in records.values())
        st.counts.update(seeds=len(records), **{f"task_{t}": n for t, n in sorted(
            by_task.items())})
        st.extra["sources"] = per_source
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


def _eval_set(p: Pipeline, es: Any) -> int:
    """One evaluation set -> samples.jsonl, its closed corpus.jsonl and (with gold) beir/;
    refused in one line if it holds a question the run trained on."""
    from collections import Counter

    from scarlet_ray import evalsets
    from scarlet_ray.errors import EmptyInput
    from scarlet_ray.records import RecordError, write_jsonl

    lay = p.lay
    where = f"evaluation set {es.name}"
    with _step(p, lay.eval_set_dir(es.name), "eval_set", ("samples.jsonl", "corpus.jsonl", "beir"),
               args={"set": es.model_dump(mode="json")}) as st:
        st.errors.path.unlink(missing_ok=True)  # rewritten whole
        trained = evalsets.TrainedOn.from_files(lay.seeds, lay.samples)
        st.counts["trained_questions"] = len(trained.ids)
        if es.format == "beir":
            from scarlet_ray.datasets.beir import read_beir

            data = read_beir(Path(es.path), es.split)
            leak = evalsets.find_leaks(data.queries.items(), trained)
            if leak:
                raise UsageError(leak.line(where, len(data.queries)))
            st.counts.update(questions=len(data.queries), docs=len(data.corpus))
            st.extra.update(kind="beir", task=es.task)
            return 0
        res = evalsets.read_set(es, p.cfg.data.passage_words)
        st.errors.add(res.skipped, stage="read")
        samples = list(res.records)
        if not samples:
            why = (f"{len(res.skipped)} quarantined, see {st.errors.path}" if res.skipped
                   else "the file holds none")
            raise EmptyInput(f"{es.path}: no usable records for {where} ({why})")
        leak = evalsets.find_leaks(((s.id, s.input) for s in samples), trained)
        if leak:
            raise UsageError(leak.line(where, len(samples)))
        write_jsonl(lay.eval_set_samples(es.name), samples)
        if es.run_corpus:  # the run's converted corpus, read in place
            from scarlet_ray.records import iter_jsonl_objects

            gold_ids = {g for s in samples for g in s.gold_passage_ids}
            n = 0
            found: set[str] = set()
            for n, (_, o) in enumerate(iter_jsonl_objects(lay.corpus), 1):  # noqa: B007
                if isinstance(o, dict) and o.get("id") in gold_ids:
                    found.add(o["id"])
            qrels = [(s.id, g) for s in samples for g in s.gold_passage_ids if g in found]
        elif es.corpus:
            bad: list[RecordError] = []
            n = write_jsonl(lay.eval_set_corpus(es.name), evalsets.stream_corpora(
                es.corpus, es.corpus_formats, p.cfg.data.passage_words, bad, where))
            st.errors.add(bad, stage="read")
            gold_ids = {g for s in samples for g in s.gold_passage_ids}
            qrels = [(s.id, g) for s in samples for g in s.gold_passage_ids]
        else:
            corpus, qrels = evalsets.passages_of(samples)
            n = write_jsonl(lay.eval_set_corpus(es.name), corpus)
            gold_ids = set()
        if not n:
            raise EmptyInput(f"{where}: its corpus is empty (set corpus: files, or read a "
                             "format whose samples carry passages)")
        if qrels:
            evalsets.write_beir(lay.eval_set_beir(es.name), lay.set_corpus(es), samples, qrels)
        tasks = Counter(s.task for s in samples)
        st.counts.update(questions=len(samples), passages=n, qrels=len(qrels),
                         skipped=len(res.skipped), gold_ids=len(gold_ids))
        st.extra.update(kind="samples", tasks=dict(tasks), task=tasks.most_common(1)[0][0])
    return 0


def _pooled(p: Pipeline) -> int:
    from scarlet_ray import evalsets
    from scarlet_ray.records import write_jsonl

    sets = [es for es in p.cfg.evaluation.sets if es.format != "beir"]
    names = [es.name for es in sets]
    with _step(p, p.lay.pooled_corpus.parent, "eval_pooled", ("corpus.jsonl",),
               args={"sets": names}) as st:
        # sets sharing the run's corpus contribute it once
        corpora = {("run" if es.run_corpus else es.name): p.lay.set_corpus(es) for es in sets}
        n = write_jsonl(p.lay.pooled_corpus, evalsets.pooled(corpora))
        st.counts.update(passages=n, sets=len(names))
    return 0


class Skip(str):
    """A step's result that says it had nothing to do, and why."""


def _set_task(p: Pipeline, name: str) -> str | None:
    m = read_manifest(p.lay.eval_set_dir(name)) or {}
    return m.get("task") or (m.get("extra") or {}).get("task")


def _set_retrieval(p: Pipeline, es: Any, model: str, out: Path) -> Any:
    from scarlet_ray.evaluation import stages as evaluation
    from scarlet_ray.formatting import query_instruction
    from scarlet_ray.synthesis.tasks import get_task

    if es.format == "beir":
        beir, split = Path(es.path), es.split
    else:
        beir, split = p.lay.eval_set_beir(es.name), "test"
        if not beir.exists():
            return Skip("no gold passages in the set: RAG only")
    configured = es.query_instruction if es.query_instruction is not None else \
        p.cfg.evaluation.query_instruction
    task = es.task or _set_task(p, es.name)
    instr = query_instruction(configured, get_task(task).instruction if task else "")
    inputs = {"set": es.model_dump(mode="json")}
    m = read_manifest(out)
    if m and m.get("status") == "complete" and m.get("fingerprint") == fingerprint(
            stage_settings("evaluate_retrieval", p.cfg.dump(),
                           {"model": model, "split": split, "instruction": instr, **inputs})):
        return Skip("complete in manifest")
    return evaluation.retrieval(p.cfg, model, beir, split, out, p.options, instruction=instr,
                                inputs=inputs)


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
    ev = cfg.evaluation
    # the floor (no retrieval) and ceiling (gold passages) don't depend on the retriever:
    # generate them once, with the base model's closed-corpus run
    only_retrieved = cfg.model_copy(deep=True)
    only_retrieved.evaluation.rag_conditions = ["retrieved"]
    rag_sets = [es for es in ev.sets if es.format != "beir"]
    pooled = "pooled" in ev.corpus and rag_sets
    for es in ev.sets:
        set_step = f"set {es.name}"
        # after training: the leakage check sees every attributed sample
        steps.append((set_step, "evaluate", lay.eval_set_dir(es.name), "eval_set",
                      _bind(_eval_set, p, es), ("inputs",),
                      {"set": es.model_dump(mode="json")}))
    if pooled:
        steps.append(("pooled corpus", "evaluate", lay.pooled_corpus.parent, "eval_pooled",
                      lambda: _pooled(p), tuple(f"set {es.name}" for es in rag_sets),
                      {"sets": [es.name for es in rag_sets]}))
    for es in ev.sets:
        set_step = f"set {es.name}"
        instr = es.query_instruction if es.query_instruction is not None else \
            ev.query_instruction
        n_new = es.max_new_tokens or ev.max_new_tokens
        for variant, model in models.items():
            out = lay.eval_run("retrieval", variant, es.name)
            # the instruction joins the fingerprint inside the stage (it needs the set's task)
            steps.append((f"retrieval {es.name} ({variant})", "evaluate", out, "",
                          _bind(_set_retrieval, p, es, model, out),
                          (set_step, trained_by[variant]), None))
        if es.format == "beir":
            continue
        corpora = [("rag", lay.set_corpus(es))] if "closed" in ev.corpus else []
        if pooled:
            corpora.append(("rag-pooled", lay.pooled_corpus))
        for kind, corpus in corpora:
            # what made the inputs: the set, and for the pooled corpus every set in it
            inputs: dict[str, Any] = {"set": es.model_dump(mode="json")}
            if kind == "rag-pooled":
                inputs["pooled"] = [x.model_dump(mode="json") for x in rag_sets]
            for variant, model in models.items():
                c = cfg if variant == "base" and kind == "rag" else only_retrieved
                out = lay.eval_run(kind, variant, es.name)
                needs = (set_step, trained_by[variant]) + (
                    ("pooled corpus",) if kind == "rag-pooled" else ())
                steps.append((f"{kind} {es.name} ({variant})", "evaluate", out, "evaluate_rag",
                              _bind(evaluation.rag, c, model, lay.eval_set_samples(es.name),
                                    corpus, out, opt, query_instruction=instr,
                                    max_new_tokens=n_new, inputs=inputs), needs,
                              {"model": model, "corpus": str(corpus),
                               "samples": str(lay.eval_set_samples(es.name)),
                               "conditions": list(dict.fromkeys(c.evaluation.rag_conditions)),
                               "query_instruction": instr, "max_new_tokens": n_new,
                               **inputs}))
    if ev.beir:
        for variant, model in models.items():
            out = lay.eval_run("beir", variant)
            steps.append((f"beir ({variant})", "evaluate", out, "evaluate_retrieval",
                          _bind(evaluation.retrieval, cfg, model, ev.beir, ev.split, out, opt),
                          (trained_by[variant],),
                          {"model": model, "split": ev.split,
                           "instruction": ev.query_instruction or ""}))
    return steps


def _bind(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


def run_pipeline(cfg: Config, run_dir: str | Path, options: StageOptions | None = None) -> int:
    """Run every configured stage in order; print a summary; non-zero if a stage failed."""
    p = Pipeline(cfg, Path(run_dir), options or StageOptions())
    if p.run_dir.exists() and not p.run_dir.is_dir():
        raise UsageError(f"{p.run_dir}: exists and is not a directory (--output takes a folder)")
    from scarlet_ray.evalsets import static_leaks

    leaks = static_leaks(cfg)
    if leaks:
        more = f" (and {len(leaks) - 1} more: scarlet run --dry-run lists them)" if len(
            leaks) > 1 else ""
        raise UsageError(leaks[0] + more)
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
