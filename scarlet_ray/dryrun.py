"""``scarlet run --dry-run``: the resolved job, every input and every problem, before a GPU is paid.

Nothing here loads a model, opens a network connection or reads more of a file than a line count:
it resolves the config, looks at the inputs where they are (counting records only where that is
cheap: JSONL lines), and lists every problem at once (missing inputs, unknown formats or tasks,
evaluation sets that would leak training questions) so a cluster job fails here, in seconds, not
after its first stage.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config
from scarlet_ray.layout import RunLayout

Rows = list[tuple[Any, ...]]


@dataclass
class DryRun:
    sections: list[tuple[str, tuple[str, ...], Rows]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def show(self) -> None:
        from scarlet_ray.manifest import print_table
        from scarlet_ray.redact import redact

        for title, headers, rows in self.sections:
            print_table(title, rows, headers=headers)  # cells are redacted there
        for w in self.warnings:
            print(redact(f"warning: {w}"))
        if self.problems:
            print(f"{len(self.problems)} problem(s):")
            for p in self.problems:
                print(redact(f"  - {p}"))
        else:
            print("no problems found: the job can be submitted")


def _file_state(path: str) -> tuple[str, int | None]:
    """("present"/"absent"/"folder", records where counting is cheap)."""
    from scarlet_ray.datasets.sampling import count_records

    p = Path(path)
    if not p.exists():
        return "absent on this machine", None
    if p.is_dir():
        return "folder", None
    try:
        return "present", count_records(p)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}", None


def _task_of(fmt: str, path: str, task: str | None) -> str | None:
    """The task a source's records get: explicit, else what its reader infers."""
    if task:
        return task
    if fmt == "kilt":
        from scarlet_ray.datasets.kilt import task_from_file_name

        try:
            return task_from_file_name(path)
        except ValueError:
            return None  # reported: the set or source must name its task
    return {"hotpotqa": "hotpotqa", "musique": "hotpotqa", "squad": "nq", "dpr": "nq",
            "flashrag-qa": "nq", "scifact": "scifact", "climate-fever": "climate-fever",
            "fiqa": "fiqa"}.get(fmt)


FOLDER_FORMATS = {"beir", "fiqa"}  # formats that read a folder; every other reads a file


def _wrong_kind(state: str, fmt: str) -> str | None:
    if state == "folder" and fmt not in FOLDER_FORMATS:
        return f"is a folder, and format {fmt!r} reads a file"
    if state == "present" and fmt == "beir":
        return "is a file, and format 'beir' reads a folder (corpus.jsonl, queries.jsonl, qrels/)"
    return None


def _n(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def dry_run(cfg: Config, output: str | Path) -> DryRun:
    from scarlet_ray.datasets import FORMATS
    from scarlet_ray.evalsets import seed_line, static_leaks
    from scarlet_ray.synthesis.tasks import get_task, selected_tasks, task_pool

    dr = DryRun()
    pool = task_pool(cfg.synthesis.extra_tasks)
    out = Path(output)
    lay = RunLayout(out)
    stages = list(cfg.stages)
    dr.sections.append((f"scarlet run --dry-run: {cfg.name}", ("setting", "value"), [
        ("stages", ", ".join(stages)), ("output", str(out)),
        ("ray", cfg.ray.address or os.environ.get("RAY_ADDRESS") or "local cluster"),
        ("attribution runner", f"{cfg.attribution.runner}, {cfg.attribution.n_masks} masks "
                               f"(keep p={cfg.attribution.keep_prob})"),
        ("labels", cfg.labels.method if cfg.labels.method != "fixed" else
         f"fixed top-{cfg.labels.fixed_top}/bottom-{cfg.labels.fixed_bottom}"),
        ("knowledge expansion", cfg.context.knowledge),
    ]))
    if out.exists() and not out.is_dir():
        dr.problems.append(f"{out}: exists and is not a directory (--output takes a folder)")

    # ---- seeds
    rows: Rows = []
    per_task: dict[str, int] = defaultdict(int)
    sources = cfg.data.seed_sources()
    if not sources:
        dr.problems.append("data.seeds: not set")
    for i, src in enumerate(sources):
        where = f"data.seeds.{i}" if isinstance(cfg.data.seeds, list) else "data.seeds"
        state, n = _file_state(src.path)
        spec = FORMATS.get(src.format)
        if spec is None:
            dr.problems.append(f"{where}.format: unknown format {src.format!r}")
        elif spec.kind == "corpus":
            dr.problems.append(f"{where}.format: {src.format!r} is a corpus format, not seeds")
        task = _task_of(src.format, src.path, src.task)
        if task is None and src.format == "kilt":
            dr.problems.append(f"{where}.task: {src.path}: the file name names no KILT task; "
                               "set task")
        if task is not None and task not in pool:
            dr.problems.append(f"{where}.task: unknown task {task!r}")
        if state.startswith("absent") or state.startswith("unreadable"):
            dr.problems.append(f"{where}: {src.path}: {state}")
        elif (why := _wrong_kind(state, src.format)):
            dr.problems.append(f"{where}: {src.path} {why}")
        takes = src.count if src.count is not None else n
        if src.count is not None and n is not None and n < src.count:
            dr.warnings.append(f"{where}: {src.path} has {n:,} records, fewer than count "
                               f"{src.count:,}: all of them are taken")
            takes = n
        per_task[task or "?"] += takes or 0
        rows.append((task or "?", seed_line(src), src.format, src.path, state, _n(n)))
    dr.sections.append(("seed mix", ("task", "take", "format", "path", "file", "records"), rows))
    if len(per_task) > 1:
        dr.sections.append(("seeds per task", ("task", "seeds"),
                            [(t, f"{n:,}") for t, n in sorted(per_task.items())]))

    # ---- corpus
    rows = []
    fmts = cfg.data.corpus_formats
    if fmts and len(fmts) != len(cfg.data.corpus):
        dr.problems.append("data.corpus_formats: must be empty or name one format per corpus")
    if not cfg.data.corpus and "context" in stages:
        dr.problems.append("data.corpus: empty: the context stage retrieves from it")
    for i, path in enumerate(cfg.data.corpus):
        fmt = fmts[i] if i < len(fmts) else "jsonl"
        state, n = _file_state(path)
        if fmt != "jsonl" and (fmt not in FORMATS or FORMATS[fmt].kind != "corpus"):
            dr.problems.append(f"data.corpus_formats.{i}: {fmt!r} is not a corpus format")
        if state.startswith("absent") or state.startswith("unreadable"):
            dr.problems.append(f"data.corpus.{i}: {path}: {state}")
        rows.append((fmt, path, state, _n(n)))
    if cfg.index.path:  # the context stage searches this index instead of encoding the corpus
        from scarlet_ray.index.folder import IndexFolder

        try:
            rec = IndexFolder.peek(cfg.index.path)
            rows.append(("index", cfg.index.path, f"{rec['ann']['kind']}, encoder "
                         f"{rec.get('encoder_ref')}", _n(rec["counts"]["passages"])))
            if rec.get("encoder_ref") != cfg.models.retriever:
                dr.problems.append(f"index.path: {cfg.index.path}: built with "
                                   f"{rec.get('encoder_ref')!r}, models.retriever is "
                                   f"{cfg.models.retriever!r}")
        except ValueError as exc:
            dr.problems.append(f"index.path: {exc}")
    dr.sections.append(("corpus (shared contexts are retrieved from it)",
                        ("format", "path", "file", "records"), rows))

    # ---- evaluation sets
    ev = cfg.evaluation
    rows = []
    for i, es in enumerate(ev.sets):
        where = f"evaluation.sets.{i} ({es.name})"
        state, n = _file_state(es.path)
        if es.format != "beir" and es.format not in FORMATS:
            dr.problems.append(f"{where}.format: unknown format {es.format!r}")
        elif es.format != "beir" and FORMATS[es.format].kind == "corpus":
            dr.problems.append(f"{where}.format: {es.format!r} is a corpus format, not questions")
        if state.startswith("absent") or state.startswith("unreadable"):
            dr.problems.append(f"{where}: {es.path}: {state}")
        elif (why := _wrong_kind(state, es.format)):
            dr.problems.append(f"{where}: {es.path} {why}")
        if es.offset and es.sampling != "first":
            dr.problems.append(f"{where}: offset works with sampling: first")
        task = _task_of(es.format, es.path, es.task)
        metric, n_new = "-", "-"
        if task is not None:
            try:
                t = get_task(task, pool)
                metric = t.metric
                n_new = str(es.max_new_tokens or ev.max_new_tokens or t.max_new_tokens)
            except KeyError:
                dr.problems.append(f"{where}.task: unknown task {task!r}")
        for j, c in enumerate(es.corpus):
            cstate, _ = _file_state(c)
            if cstate.startswith("absent") or cstate.startswith("unreadable"):
                dr.problems.append(f"{where}.corpus.{j}: {c}: {cstate}")
        instr = es.query_instruction if es.query_instruction is not None else \
            ev.query_instruction
        take = "all" if es.count is None else f"{es.count:,} {es.sampling}"
        if es.offset:
            take += f" after {es.offset:,}"
        corpus = ("own passages" if not es.corpus else ", ".join(es.corpus)) \
            if es.format != "beir" else "BEIR corpus"
        rows.append((es.name, task or "?", metric, take, n_new,
                     "task instruction" if instr is None else repr(instr), corpus, es.path,
                     state if n is None else f"{state}, {n:,} records"))
    if ev.beir:
        state, _ = _file_state(ev.beir)
        if state.startswith("absent"):
            dr.problems.append(f"evaluation.beir: {ev.beir}: {state}")
        rows.append(("beir", "-", "nDCG@10", "all", "-", repr(ev.query_instruction or ""),
                     "BEIR corpus", ev.beir, state))
    if not rows and "evaluate" in stages:
        dr.warnings.append("evaluation.sets: none: the run evaluates attribution only")
    dr.sections.append((f"evaluation sets (corpus: {', '.join(ev.corpus)}; RAG top-"
                        f"{ev.rag_top_k})", ("set", "task", "metric", "take", "new tokens",
                                             "query instruction", "corpus", "path", "file"),
                        rows))
    dr.problems.extend(static_leaks(cfg))

    # ---- models and synthesis
    rows = [("generator", cfg.models.generator), ("retriever", cfg.models.retriever),
            ("ner", cfg.models.ner),
            ("synthesis", f"{cfg.synthesis.backend}: {cfg.synthesis.model}"
                          if cfg.synthesis.backend == "openai"
                          else f"{cfg.synthesis.backend} (the generator)"),
            ("attribution backend", cfg.attribution.backend),
            ("rag backend", cfg.evaluation.rag_backend),
            ("training query instruction", "task instruction" if
             cfg.training.query_instruction is None else repr(cfg.training.query_instruction)),
            ("training", f"{cfg.training.backend}, {cfg.training.num_workers} worker(s), "
                         f"batch {cfg.training.batch_size}, group {cfg.training.group_size}")]
    uses_vllm = [name for name, on in (
        ("synthesis.backend", cfg.synthesis.backend == "vllm" and "synthesize" in stages),
        ("attribution.backend", cfg.attribution.backend == "vllm" and "attribute" in stages),
        ("evaluation.rag_backend", cfg.evaluation.rag_backend == "vllm")) if on]
    if uses_vllm:
        from scarlet_ray.models.vllm_engine import unavailable_reason

        why = unavailable_reason()
        if why:  # a warning: the cluster's image may have what this machine lacks
            dr.warnings.append(f"{', '.join(uses_vllm)}=vllm: not runnable on this machine "
                               f"({why})")
    for key in ("generator", "retriever"):
        ref = getattr(cfg.models, key)
        if ref.startswith(("/", "./", "../", "~")) and not Path(ref).expanduser().exists():
            dr.problems.append(f"models.{key}: {ref}: absent on this machine")
    if "synthesize" in stages:
        try:
            tasks = selected_tasks(cfg.synthesis)
            rows.append(("synthesis tasks", ", ".join(t.name for t in tasks)))
        except ValueError as exc:
            dr.problems.append(str(exc))
            tasks = []
        if cfg.synthesis.backend == "openai" and not os.environ.get(cfg.synthesis.api_key_env):
            dr.warnings.append(f"synthesis.api_key_env: ${cfg.synthesis.api_key_env} is not set "
                               "in this environment (the driver that runs synthesis needs it)")
    else:
        tasks = []
    dr.sections.append(("models", ("role", "model"), rows))

    # ---- outputs
    dr.sections.append(("outputs", ("what", "path"), [
        ("seeds / corpus", f"{lay.seeds}, {lay.corpus}"), ("shared contexts", str(lay.contexts)),
        ("synthesized", str(lay.synthesized)), ("attributions", str(lay.attributions)),
        ("training examples", str(lay.train_file)), ("retriever", str(lay.model_dir)),
        ("checkpoints", cfg.training.storage_path or str(out / "train" / "checkpoints")),
        ("evaluation", str(lay.eval_dir)), ("report", str(lay.report_dir / "report.html"))]))

    # ---- cost: scarlet plan on the expected number of samples
    seeds = sum(per_task.values())
    contexts = min(seeds, cfg.synthesis.max_contexts or seeds)
    samples = seeds * int(cfg.data.attribute_seeds) + contexts * len(tasks)
    if samples:
        from scarlet_ray.attribution.plan import (
            DEVICE_HEADERS,
            PRICES_AS_OF,
            device_rows,
            make_plan,
            workload_rows,
        )

        try:
            plan = make_plan(cfg, samples)
        except ValueError as exc:  # an unknown generator size: the estimate needs one number
            dr.warnings.append(f"no cost estimate: {exc}")
            return dr
        dr.sections.append((f"scarlet plan: attribution of ~{samples:,} samples ({seeds:,} seeds"
                            f"{' attributed' if cfg.data.attribute_seeds else ''} + "
                            f"{contexts:,} contexts x {len(tasks)} tasks)",
                            ("quantity", "value", "source"), workload_rows(plan)))
        dr.sections.append((f"GPU-hours and cost per GPU type (estimates; prices as of "
                            f"{PRICES_AS_OF}; `scarlet plan` explains them)", DEVICE_HEADERS,
                            device_rows(plan)))
    return dr
