"""Stage 6 as plain functions: retrieval on a BEIR set, attribution vs gold, downstream RAG.

Each runs inside ``stagedir.StageRun`` (lock, fingerprint, manifest, errors) and returns a
``StageOutcome``; the ``scarlet evaluate ...`` commands and ``scarlet run`` both call them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config
from scarlet_ray.errors import UsageError
from scarlet_ray.stagedir import StageOptions, StageRun
from scarlet_ray.stages import StageOutcome


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _write_json(path: Path, obj: Any, indent: int = 2) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent))
    os.replace(tmp, path)


# ------------------------------------------------------------------ retrieval
def _index_args(index: str | Path | None) -> dict[str, str]:
    """Fingerprint args of a given index folder (its vectors, corpus and ANN settings)."""
    if not index:
        return {}
    from scarlet_ray.index.folder import IndexFolder

    return {"index": IndexFolder.identity(IndexFolder.peek(index))}


def _check_index(opened: Any, encoder: Any, model: str, cfg: Config) -> Any:
    from scarlet_ray.index.folder import encoder_settings

    return opened.check(encoder_settings(encoder, cfg.data.passage_words),
                        asked=f"--model {model!r}")


def retrieval(cfg: Config, model: str, beir: str | Path, split: str, out: str | Path,
              options: StageOptions | None = None, *, instruction: str | None = None,
              inputs: dict[str, Any] | None = None,
              index: str | Path | None = None) -> StageOutcome:
    """A retriever on a BEIR set -> metrics.json, per_query.json, run.trec.

    ``index``: an index folder of the set's corpus built with this model (``scarlet index
    build --corpus beir:DIR``); the corpus is then not read, only queries and qrels.

    Queries are ``instruction [SEP] query`` (formatting.query_text); ``instruction`` None means
    ``evaluation.query_instruction`` (a BEIR folder has no task of its own, so unset is none).
    ``inputs``: settings of what made the input files (an evaluation set's), for the fingerprint,
    so a set read anew is not scored with the old set's results.
    """
    from scarlet_ray.datasets.beir import read_beir
    from scarlet_ray.evaluation.retrieval import evaluate_dense, write_trec_run
    from scarlet_ray.formatting import query_instruction
    from scarlet_ray.index.folder import IndexFolder
    from scarlet_ray.models.encoder import load_encoder

    beir_dir = Path(beir)
    if not beir_dir.is_dir():
        raise UsageError(f"{beir_dir}: not a BEIR directory (corpus.jsonl, queries.jsonl, "
                         "qrels/)")
    instr = instruction if instruction is not None else query_instruction(
        cfg.evaluation.query_instruction, "")
    with StageRun(Path(out), "evaluate_retrieval", cfg.dump(),
                  ("metrics.json", "per_query.json", "run.trec", "cache"),
                  options or StageOptions(), args={"model": model, "split": split,
                                                   "instruction": instr, **(inputs or {}),
                                                   **_index_args(index)}) as st:
        st.models["retriever"] = model
        st.extra.update(beir=str(beir_dir), split=split)
        t0 = time.perf_counter()
        opened = IndexFolder.open(index) if index else None
        data = read_beir(beir_dir, split, known=opened.passages.has_ids if opened else None)
        st.timings["read_s"] = time.perf_counter() - t0
        if not data.queries:
            raise UsageError(f"{beir_dir}: no queries with qrels in split {split!r}")
        t0 = time.perf_counter()
        encoder = load_encoder(model, device=resolve_device(cfg.models.device))
        if opened is not None:
            _check_index(opened, encoder, model, cfg)
        st.timings["load_model_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate_dense(encoder, data, k=cfg.evaluation.top_k, cache_dir=st.path("cache"),
                             batch_size=cfg.context.encode_batch_size,
                             instruction=instr, limit=cfg.evaluation.limit, index=opened,
                             model_ref=model)
        st.timings["search_and_score_s"] = time.perf_counter() - t0
        if opened is not None:
            st.extra["index"] = opened.summary()
        n_docs = res["info"]["n_docs"]
        tag = Path(model).name if os.sep in model else model
        n_lines = write_trec_run(st.path("run.trec"), res["hits"], tag=tag)
        metrics = {
            **{k: round(v, 6) for k, v in res["metrics"].items()},
            "n_queries": len(res["per_query"]), "n_docs": n_docs, "model": model,
            "beir": str(beir_dir), "split": split, "top_k": max(cfg.evaluation.top_k, 100),
            "query_instruction": instr,
            # judged documents missing from the corpus stay judged, as BEIR's evaluation does
            "qrels_unknown_docs": res["info"].get("qrels_unknown_docs", 0),
            "qrels_queries_without_text": res["info"].get("qrels_queries_without_text", 0),
        }
        _write_json(st.path("metrics.json"), metrics)
        _write_json(st.path("per_query.json"), res["per_query"], indent=1)
        st.counts.update(queries=len(res["per_query"]), docs=n_docs,
                         run_lines=n_lines, docs_encoded=res["info"]["encoded"],
                         docs_from_cache=res["info"]["cached"],
                         qrels_unknown_docs=metrics["qrels_unknown_docs"],
                         qrels_queries_without_text=metrics["qrels_queries_without_text"])
        st.extra.update(cache_key=res["info"]["cache_key"], metrics=res["metrics"])
        rows = [(m, res["metrics"][m]) for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10")]
        rows += [("queries", len(res["per_query"])), ("docs", n_docs),
                 ("docs encoded (rest cached)", res["info"]["encoded"]), ("model", model),
                 ("index", f"{res['info']['index']['kind']} {res['info']['index']['path']}"),
                 ("output", str(st.out))]
        return StageOutcome("evaluate_retrieval", 0, rows, "", st.out)


# ------------------------------------------------------------------ attribution vs gold
def attribution(cfg: Config, attributions: str | Path, samples_path: str | Path,
                out: str | Path, options: StageOptions | None = None, *,
                counterfactual: bool = False) -> StageOutcome:
    """nDCG@1/@5 of the utilities against gold passages, beside the baselines.

    With ``counterfactual``, also the share of true gold passages each method ranks above their
    answer-swapped copy (``evaluation/counterfactual.py``), each copy's sample attributed afresh.
    """
    import numpy as np
    from tqdm import tqdm

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.evaluation.attribution import baseline_scores, counterfactual_wins
    from scarlet_ray.evaluation.counterfactual import other_answer, summarise_wins
    from scarlet_ray.evaluation.ranking import ndcg_at_k
    from scarlet_ray.records import RecordError, Sample, read_attributions, read_jsonl
    from scarlet_ray.stagedir import stage_settings

    # the copies are attributed here, so the attribution settings shape the result too
    cf_args = ({"counterfactual": True} | {
        f"counterfactual.{k}": v for k, v in stage_settings("attribute", cfg.dump()).items()
        if not k.startswith("labels.")}) if counterfactual else {}
    with StageRun(Path(out), "evaluate_attribution", cfg.dump(), ("metrics.json",),
                  options or StageOptions(), args=cf_args) as st:
        st.errors.path.unlink(missing_ok=True)  # rewritten whole
        attrs = read_attributions(attributions)
        rep = read_jsonl(samples_path, Sample, on_error="quarantine")
        st.errors.add(rep.errors, stage="read")
        samples = {s.id: s for s in rep.records}
        order = {s.id: i for i, s in enumerate(rep.records)}  # other_answer: the next sample's
        if attrs and not any(a.id in samples for a in attrs) and not st.options.allow_empty:
            raise UsageError(f"{samples_path}: none of the {len(attrs)} attributed ids in "
                             f"{attributions} is a sample there (the wrong samples file?)")
        base = list(cfg.attribution.eval_baselines)
        gen = enc = None
        if counterfactual or {"loo", "attention"} & set(base):
            from scarlet_ray.models.generator import load_generator

            gen = load_generator(cfg.models.generator, cfg.models.dtype, cfg.models.device)
        if "similarity" in base:
            from scarlet_ray.models.encoder import load_encoder

            enc = load_encoder(cfg.models.retriever)
        st.models.update(generator=cfg.models.generator, retriever=cfg.models.retriever)
        engine = AttributionEngine(gen, cfg.attribution, cfg.labels,
                                   generator_name=cfg.models.generator)
        methods = ["perturbation", *base]
        res: dict[str, dict[str, list[float]]] = {m: {"ndcg@1": [], "ndcg@5": []}
                                                  for m in methods}
        skipped = {"no_sample": 0, "no_gold": 0, "passage_missing": 0}
        cf_wins: dict[str, list[list[float]]] = {m: [] for m in methods}
        cf_skipped = {"no_other_answer": 0, "no_answer_in_gold": 0, "attribution_failed": 0,
                      "pairs_cut": 0}
        for a in tqdm(attrs, desc="evaluate attribution", unit="sample"):
            s = samples.get(a.id)
            if s is None:
                skipped["no_sample"] += 1
                continue
            gold = set(s.gold_passage_ids) & set(a.passage_ids)
            if not gold:
                skipped["no_gold"] += 1
                continue
            by_id = {p.id: p for p in s.passages}
            missing = [p for p in a.passage_ids if p not in by_id]
            if missing:  # the attribution was made on another version of this sample
                skipped["passage_missing"] += 1
                st.errors.add([RecordError(str(samples_path), "passages",
                                           f"passage ids {missing} of the attribution are not "
                                           "in this sample", a.id)])
                continue
            rel = [pid in gold for pid in a.passage_ids]
            passages = [by_id[p] for p in a.passage_ids]
            sub = s.model_copy(update={"passages": passages, "gold_passage_ids": [
                g for g in s.gold_passage_ids if g in gold]})
            prep = engine.prepare(sub) if gen is not None and {"loo", "attention"} & set(base) \
                else None
            scores = {"perturbation": np.asarray(a.utility),
                      **baseline_scores(base, s.id, s.input, passages, gen=gen, prep=prep,
                                        encoder=enc, target=cfg.attribution.target,
                                        seed=cfg.seed)}
            for m, v in scores.items():
                res[m]["ndcg@1"].append(ndcg_at_k(v, rel, 1))
                res[m]["ndcg@5"].append(ndcg_at_k(v, rel, 5))
            if not counterfactual:
                continue
            try:
                other = other_answer(rep.records, order[s.id])
            except ValueError:
                cf_skipped["no_other_answer"] += 1
                continue
            try:
                wins, why = counterfactual_wins(engine, sub, other, base, encoder=enc,
                                                seed=cfg.seed)
            except ValueError as exc:  # the copy's sample cannot be scored (window, masks)
                why = "attribution_failed"
                st.errors.add([RecordError(str(samples_path), "counterfactual", str(exc), a.id)])
            if why is not None:
                cf_skipped[why] += 1
                continue
            for m, w in wins.items():
                cf_wins[m].append(w)
        metrics = {m: {k: (float(np.mean(v)) if v else None) for k, v in d.items()}
                   | {"n": len(d["ndcg@1"])} for m, d in res.items()}
        out_json: dict[str, Any] = {"methods": metrics, "skipped": skipped}
        rows = [(f"{m} nDCG@1 / @5 (n)",
                 f"{_f(metrics[m]['ndcg@1'])} / {_f(metrics[m]['ndcg@5'])} ({metrics[m]['n']})")
                for m in methods]
        if counterfactual:
            cf = {m: summarise_wins(w) for m, w in cf_wins.items()}
            out_json["counterfactual"] = {
                "measure": "share of (true gold passage, answer-swapped copy) pairs where the "
                           "true passage scores higher; ties lose",
                "methods": cf, "skipped": cf_skipped}
            rows += [(f"{m} counterfactual: true above copy (pairs)",
                      f"{_f(cf[m]['won'])} ({cf[m]['pairs']})") for m in methods]
            rows.append(("counterfactual skipped",
                         ", ".join(f"{k} {v}" for k, v in cf_skipped.items())))
            st.counts.update(counterfactual_pairs=cf["perturbation"]["pairs"],
                             **{f"counterfactual_{k}": v for k, v in cf_skipped.items()})
        _write_json(st.path("metrics.json"), out_json)
        st.counts.update(attributions=len(attrs), **skipped)
        return StageOutcome("evaluate_attribution", 0, rows, "", st.out)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


# ------------------------------------------------------------------ RAG
def _extra_tasks(cfg: Config) -> dict[str, Any]:
    from scarlet_ray.synthesis.tasks import BUILTIN_TASKS, task_pool

    pool = task_pool(cfg.synthesis.extra_tasks)
    return {k: v for k, v in pool.items() if k not in BUILTIN_TASKS}


def _check_tasks(samples: list[Any], path: str, extra: dict[str, Any]) -> None:
    from scarlet_ray.synthesis.tasks import get_task

    for s in samples:
        try:
            get_task(s.task, extra)
        except KeyError as exc:
            raise UsageError(f"{path}: sample {s.id!r}: task: {exc.args[0]}") from None


def rag(cfg: Config, model: str, samples_path: str | Path, corpus: str | Path,
        out: str | Path, options: StageOptions | None = None, *,
        query_instruction: str | None = None, max_new_tokens: int | None = None,
        inputs: dict[str, Any] | None = None,
        index: str | Path | None = None) -> StageOutcome:
    """Retriever + generator on samples -> predictions.jsonl (resumable), metrics.json.

    Retrieval queries are ``instruction [SEP] input`` with ``query_instruction`` (else
    ``evaluation.query_instruction``, else each sample's task instruction); each task generates
    its own length (``max_new_tokens``, else ``evaluation.max_new_tokens``, overrides all).
    ``index``: an index folder built with this model to retrieve from instead of ``corpus``.
    """
    from scarlet_ray.attribution.stage import engine_info
    from scarlet_ray.evaluation.dense import corpus_index, model_fingerprint, search
    from scarlet_ray.evaluation.rag import (
        build_items,
        load_corpus,
        read_predictions,
        rescore,
        retrieval_queries,
        run_items,
        summarize,
    )
    from scarlet_ray.models.encoder import load_encoder
    from scarlet_ray.models.generator import load_for_backend
    from scarlet_ray.records import Passage, Sample, completed_ids, read_jsonl, write_jsonl

    ev = cfg.evaluation
    extra = _extra_tasks(cfg)
    conditions = list(dict.fromkeys(ev.rag_conditions))
    configured = query_instruction if query_instruction is not None else ev.query_instruction
    n_new = max_new_tokens or ev.max_new_tokens
    if not corpus and not index:
        raise UsageError("--corpus or --index: the passages to retrieve from")
    args = {"model": model, "corpus": str(corpus) if corpus else "", "samples": str(samples_path),
            "conditions": conditions, "query_instruction": configured, "max_new_tokens": n_new,
            **(inputs or {}), **_index_args(index)}
    with StageRun(Path(out), "evaluate_rag", cfg.dump(),
                  ("predictions.jsonl", "metrics.json", "cache"), options or StageOptions(),
                  args=args) as st:
        preds_path = st.path("predictions.jsonl")
        st.models.update(retriever=model, generator=cfg.models.generator)
        t0 = time.perf_counter()
        samples = read_jsonl(samples_path, Sample, require_passages=False).records
        if ev.limit is not None:
            samples = samples[:ev.limit]
        st.require_records(len(samples), str(samples_path))
        _check_tasks(samples, str(samples_path), extra)
        from scarlet_ray.records import repair_tail

        repair_tail(preds_path)
        done = completed_ids(preds_path)
        todo = [s for s in samples if s.id not in done]
        st.timings["read_s"] = time.perf_counter() - t0
        prev = st.previous if st.resumed and st.previous else {}
        old_fp = prev.get("retriever_fingerprint") or (prev.get("run_key") or {}).get(
            "retriever_fingerprint")  # where folders of older versions kept it
        retrieved: dict[str, list[Passage]] = {}
        info: dict[str, Any] = {}
        if todo and "retrieved" in conditions:
            t0 = time.perf_counter()
            encoder = load_encoder(model, device=resolve_device(cfg.models.device))
            fp = model_fingerprint(encoder)
            if done and old_fp is not None and fp != old_fp:
                raise UsageError(f"{st.out}: predictions were made with other weights under "
                                 f"{model!r}; use a new --output or --restart")
            old_fp = fp
            if index:
                from scarlet_ray.index.folder import IndexFolder

                opened = _check_index(IndexFolder.open(index), encoder, model, cfg)
                st.extra["index"] = opened.summary()
            else:
                opened = corpus_index(encoder, load_corpus(str(corpus)), st.path("cache"),
                                      model_ref=model, batch_size=cfg.context.encode_batch_size)
            st.timings["load_retriever_and_corpus_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            queries = retrieval_queries(todo, configured, extra)
            hits, info = search(encoder, queries, opened, ev.rag_top_k, st.path("cache"),
                                batch_size=cfg.context.encode_batch_size)
            by_id = opened.passages.by_ids([d for h in hits for d, _ in h])
            for s, h in zip(todo, hits, strict=True):
                retrieved[s.id] = [Passage(id=d, title=by_id[d].title, text=by_id[d].text)
                                   for d, _ in h]
            st.timings["retrieve_s"] = time.perf_counter() - t0
            del encoder
        st.extra["retriever_fingerprint"] = old_fp
        written = 0
        window: Any = None
        if todo:
            t0 = time.perf_counter()
            gen = load_for_backend(cfg.models, ev.rag_backend)
            st.extra["engine"] = engine_info(gen)
            st.timings["load_generator_s"] = time.perf_counter() - t0
            items = build_items(todo, retrieved, conditions, extra, n_new)
            t0 = time.perf_counter()
            ran = run_items(gen, items, batch_size=ev.rag_batch_size,
                            chunk=max(ev.rag_batch_size, 8),
                            on_rows=lambda rows: write_jsonl(preds_path, rows, append=True))
            written, window = (ran if isinstance(ran, tuple) else (ran, None))
            st.timings["generate_s"] = time.perf_counter() - t0
        if window is not None:
            st.extra["prompt_window"] = window
        rows = read_predictions(preds_path, {s.id for s in samples})
        rescore(rows)
        summary = summarize(rows, conditions)
        metrics = {"conditions": summary, "n_samples": len(rows), "retriever": model,
                   "generator": cfg.models.generator, "top_k": ev.rag_top_k,
                   "samples": str(samples_path), "corpus": str(corpus)}
        _write_json(st.path("metrics.json"), metrics)
        st.counts.update(samples=len(samples), generated_now=written,
                         resumed=len(samples) - len(todo),
                         corpus_encoded=info.get("encoded", 0))
        table: list[tuple[str, Any]] = []
        for c in conditions:
            if c in summary:
                per = ", ".join(f"{t} {v.get('score', '-'):.3f}" if isinstance(
                    v.get("score"), float) else t for t, v in
                    sorted(summary[c]["per_task"].items()))
                table.append((f"{c} (n={summary[c]['n']})",
                              f"{summary[c]['overall']:.3f}  [{per}]"))
        return StageOutcome("evaluate_rag", 0, table, "", st.out)
