"""What are utility labels worth? MiniLM trained on each label source, k-fold over questions.

Questions: every shared HotpotQA / MuSiQue train question that ``bench/attribution_signal.py``
has attributed (plain variant; its records hold the 64 masks, the scores and leave-one-out).
Label sources, everything else equal (same questions, passages, trainer, steps, seed):

* ``scarlet``: 1-D k-means on the default utilities (ridge on logprob_sum, alpha 1, all masks);
  top cluster positive, bottom negative, middle dropped (``assign_labels``, as stage 4);
* ``soft``: the same utilities distilled (``training.loss=utility_kl``): the top passage is the
  "positive", every other passage a negative, each carrying its utility;
* ``gold``: the dataset's supporting passages positive, the others negative;
* ``loo``: leave-one-out utilities, then k-means as ``scarlet``;
* ``base``: MiniLM untrained.

Per dataset, questions are split into ``--folds`` folds (seeded); each fold's questions are held
out once while a model trains on the others' examples, in this process through the training
stage's own loop (``train_loop``: same batcher and losses as ``scarlet train``, no Ray). Each
held-out question is scored on

* nDCG@10 retrieving from the dataset's pooled passages (every question's, deduplicated);
* RAG accuracy: SmolLM2 (the generator that made the labels) answers with the top-3 retrieved
  passages (the task's metric, as ``scarlet evaluate rag``).

Transfer: a model per source trained on all of one dataset is scored the same way on the other,
and with ``--scifact`` on the shared SciFact train queries too (retrieval only: its BEIR copy has
no claim labels). Every comparison is paired per question with a 95% bootstrap interval, against
base and gold.

Variants: ``--variant NAME`` with ``--set``/``--label-temperature`` trains the same units with
another setting, keyed and tabled as ``SOURCE@NAME`` beside the defaults (e.g. the trainer's
held-out guard, ``--variant guard --set training.validation_fraction=0.2 ...``).

Resumable: each (train set, source, fold, eval set) appends one line with its per-question
scores to ``--records``; a rerun skips finished lines whose settings hash matches (a changed
setting recomputes). Models live in ``--work`` and are deleted once scored.

    python bench/value_study.py                      # what the records allow
    python bench/value_study.py --scifact --no-transfer --sources base,scarlet,gold
    python bench/value_study.py --variant T0.25 --label-temperature 0.25 --sources soft
    python bench/value_study.py --analyse            # only the table
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, shared_data_dir, write_json
from attribution_signal import default_data, default_records, load_samples, perturbation_utility

SOURCES = ("base", "scarlet", "soft", "gold", "loo")
DATASETS = ("hotpotqa", "musique")
SCIFACT = "scifact"
# evaluation settings (pool, top-3, 16 new tokens); bump when they change so records recompute
EVAL_REV = 2
DEFAULT_TRAIN = ("training.loss=infonce", "training.temperature=0.05", "training.lr=2e-5",
                 "training.epochs=1", "training.batch_size=8", "training.group_size=4",
                 "training.max_seq_len=128", "training.backend=ddp",
                 "training.checkpoint_every=100000", "training.log_every=100000")


# ------------------------------------------------------------------ data

def load_study_set(dataset: str, limit: int) -> list[tuple[Any, dict]]:
    """(sample, attribution record) for every attributed question, in file order."""
    path = Path(default_records(dataset))
    recs: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("variant") == "plain" and "skipped" not in r:
                    recs[r["id"]] = r
    out = []
    for s in load_samples(dataset, default_data(dataset), limit, 10):
        r = recs.get(s.id)
        if r is None:
            continue
        if [p.id for p in s.passages] != r["passage_ids"]:
            raise RuntimeError(f"{path}: {s.id}: record passages differ from the samples'")
        out.append((s, r))
    return out


def utilities(rec: dict, source: str) -> np.ndarray:
    if source == "loo":
        return np.asarray(rec["loo"]["logprob_sum"], dtype=np.float64)
    return np.asarray(perturbation_utility(rec, "logprob_sum", "ridge", 1.0, 10**9))


def example(sample: Any, rec: dict, source: str) -> dict | None:
    """One FlagEmbedding line (with utilities) for ``source``, or None (dropped, as stage 4)."""
    from scarlet_ray.attribution.labels import assign_labels
    from scarlet_ray.formatting import passage_text

    texts = [passage_text(p.title, p.text) for p in sample.passages]
    if source == "gold":
        gold = set(sample.gold_passage_ids)
        labels = ["pos" if p.id in gold else "neg" for p in sample.passages]
        u = np.asarray([1.0 if x == "pos" else 0.0 for x in labels])
    else:
        u = utilities(rec, "loo" if source == "loo" else "default")
        if source == "soft":
            top = int(np.argmax(u))
            labels = ["pos" if i == top else "neg" for i in range(len(u))]
        else:
            res = assign_labels(u)
            if res.drop_reason:
                return None
            labels = res.labels
    pick = {lab: [i for i, x in enumerate(labels) if x == lab] for lab in ("pos", "neg")}
    if not pick["pos"] or not pick["neg"]:
        return None
    return {"query": sample.input, "prompt": sample.instruction,
            "pos": [texts[i] for i in pick["pos"]], "neg": [texts[i] for i in pick["neg"]],
            "pos_scores": [float(u[i]) for i in pick["pos"]],
            "neg_scores": [float(u[i]) for i in pick["neg"]]}


def folds(ids: list[str], k: int, seed: int = 0) -> list[list[str]]:
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return [order[f::k] for f in range(k)]


# ------------------------------------------------------------------ train / score

def train(examples: list[dict], out: Path, overrides: list[str]) -> tuple[Path, dict]:
    """MiniLM trained in this process by the training stage's loop; returns (model, summary)."""
    from scarlet_ray.config import load_config
    from scarlet_ray.training.loop import train_loop

    cfg = load_config(None, list(overrides))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    path = out / "train.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    t0 = time.perf_counter()
    r = train_loop({"training": cfg.training.model_dump(), "model": "all-minilm-l6-v2",
                    "train": str(path), "checkpoint_dir": str(out / "ckpt")})
    return out / "ckpt" / "final" / "model", {
        "train_seconds": time.perf_counter() - t0, "optimizer_steps": r["optimizer_steps"],
        "loss_first": r["history"][0]["loss"], "loss_last": r["history"][-1]["loss"],
        "examples": len(examples),
        **{k: r[k] for k in ("validation_examples", "start_val_ndcg", "best_val_ndcg",
                             "best_step", "exported_step", "stopped_early") if k in r}}


class Pool:
    """A dataset's pooled passages (deduplicated by text) and per-question qrels."""

    def __init__(self, samples: list[Any]):
        from scarlet_ray.formatting import passage_text

        self.texts: list[str] = []
        self.passages: list[Any] = []
        ids: dict[str, int] = {}
        self.qrels: dict[str, dict[str, int]] = {}
        for s in samples:
            rel = self.qrels.setdefault(s.id, {})
            for p in s.passages:
                t = passage_text(p.title, p.text)
                if t not in ids:
                    ids[t] = len(self.texts)
                    self.texts.append(t)
                    self.passages.append(p.model_copy(update={"id": f"d{ids[t]}"}))
                d = f"d{ids[t]}"
                rel[d] = max(rel.get(d, 0), int(p.id in s.gold_passage_ids))


def retrieve(model: Any, pool: Pool, samples: list[Any]) -> tuple[dict, dict]:
    """Per question: nDCG@10 over the pool, and its top-3 passages."""
    import pytrec_eval
    import torch

    from scarlet_ray.formatting import query_instruction, query_text

    # the query as training and `scarlet evaluate` form it: task instruction [SEP] question
    q = model.encode([query_text(query_instruction(None, s.instruction), s.input)
                      for s in samples], convert_to_tensor=True,
                     normalize_embeddings=True, batch_size=64)
    d = model.encode(pool.texts, convert_to_tensor=True, normalize_embeddings=True,
                     batch_size=64)
    top = torch.topk((q @ d.T).cpu(), k=min(100, len(pool.texts)), dim=1)
    run = {s.id: {f"d{j}": float(v) for v, j in zip(top.values[i].tolist(),
                                                    top.indices[i].tolist(), strict=True)}
           for i, s in enumerate(samples)}
    ev = pytrec_eval.RelevanceEvaluator({s.id: pool.qrels[s.id] for s in samples},
                                        {"ndcg_cut.10"})
    ndcg = {k: v["ndcg_cut_10"] for k, v in ev.evaluate(run).items()}
    top3 = {s.id: [pool.passages[j] for j in top.indices[i, :3].tolist()]
            for i, s in enumerate(samples)}
    return ndcg, top3


@functools.cache
def scifact() -> Any:
    """The shared SciFact BEIR copy, train split (its qrels; no claim labels, so no RAG)."""
    from scarlet_ray.datasets.beir import read_beir

    return read_beir(shared_data_dir() / SCIFACT, split="train")


def retrieve_beir(model: Any, beir: Any, cache: Path) -> dict[str, float]:
    """Per query nDCG@10 over a BEIR corpus, as ``scarlet evaluate`` searches it (bare query:
    a BEIR folder has no task instruction)."""
    from scarlet_ray.evaluation.retrieval import evaluate_dense

    res = evaluate_dense(model, beir, cache_dir=cache, batch_size=64)
    return {q: m["ndcg@10"] for q, m in res["per_query"].items()}


def rag(gen: Any, samples: list[Any], top3: dict | None, conditions=("retrieved",)) -> dict:
    """Per question and condition: the generator's score with those passages."""
    from scarlet_ray.evaluation.rag import build_items, run_items

    rows: list[dict] = []
    items = build_items(samples, top3 or {}, conditions, max_new_tokens=16)
    run_items(gen, items, batch_size=8, chunk=64, on_rows=rows.extend)
    return {c: {r["id"]: float(r["scores"][c]) for r in rows if c in r["scores"]}
            for c in conditions}


# ------------------------------------------------------------------ the study

def settings_hash(source: str, overrides: list[str], ids: list[str]) -> str:
    blob = json.dumps([EVAL_REV, source, overrides, sorted(ids)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def source_overrides(source: str, base: list[str], label_temperature: float) -> list[str]:
    if source == "soft":
        return [*base, "training.loss=utility_kl",
                f"training.label_temperature={label_temperature}"]
    return list(base)


def run_study(args: argparse.Namespace) -> None:
    from scarlet_ray.models.encoder import load_encoder
    from scarlet_ray.models.generator import load_generator

    tag = f"transfer_from_{args.transfer_from}" if args.transfer_from else "_".join(args.datasets)
    rec_path = Path(args.records or RESULTS / f"value_study_{tag}_records.jsonl")
    # every unit already scored, whichever process wrote it (the default glob) or --records
    done = read_records([*sorted(RESULTS.glob("value_study_*_records.jsonl")), rec_path])
    data = {ds: load_study_set(ds, args.limit) for ds in args.datasets}
    pools = {ds: Pool([s for s, _ in v]) for ds, v in data.items()}
    gen = load_generator("smollm2-135m-instruct") if args.rag else None
    base_overrides = [*DEFAULT_TRAIN, f"training.torch_threads={args.threads}", *args.overrides]
    work = Path(args.work or tempfile.mkdtemp(prefix="scarlet-value-"))

    def label(source: str) -> str:
        """A trained source's name in keys and the table: ``soft@T0.3`` under ``--variant``."""
        return f"{source}@{args.variant}" if args.variant and source != "base" else source

    def unit(stem: str, train_ds: str, source: str, train_ids: list[str],
             evals: list[tuple[str, list[Any], tuple[str, ...]]]) -> None:
        """Train ``source`` on ``train_ids`` once (base: none) and score it on each eval set
        ``(name, samples, extra RAG conditions)`` not yet in the records: one line each, keyed
        ``stem/EVAL``. SciFact (samples None) is retrieval only."""
        ov = source_overrides(source, base_overrides, args.label_temperature)
        h = settings_hash(source, ov if source != "base" else [], train_ids)
        todo = [e for e in evals
                if not (f"{stem}/{e[0]}" in done and done[f"{stem}/{e[0]}"]["settings"] == h)]
        if not todo:
            return
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        wdir = work / stem.replace("/", "_")
        if source == "base":
            model = load_encoder("all-minilm-l6-v2")
        else:
            pairs = {s.id: (s, r) for s, r in data[train_ds]}
            exs = [e for i in train_ids if (e := example(*pairs[i], source)) is not None]
            mdir, info = train(exs, wdir, ov)
            info["dropped"] = len(train_ids) - len(exs)
            model = load_encoder(str(mdir))
        model.max_seq_length = 128
        train_s = time.perf_counter() - t0
        for eval_ds, eval_samples, extra in todo:
            key = f"{stem}/{eval_ds}"
            t1 = time.perf_counter()
            scores: dict[str, dict[str, float]] = {}
            if eval_ds == SCIFACT:
                ndcg = retrieve_beir(model, scifact(), wdir / "scifact-index")
            else:
                ndcg, top3 = retrieve(model, pools[eval_ds], eval_samples)
                if gen:
                    scores = rag(gen, eval_samples, top3, ("retrieved", *extra))
            rec = {"key": key, "settings": h, "eval_rev": EVAL_REV, "train_set": train_ds,
                   "source": source, "label": label(source), "overrides": ov,
                   "eval_set": eval_ds, "ndcg@10": ndcg, "rag": scores.get("retrieved", {}),
                   "rag_other": {c: v for c, v in scores.items() if c != "retrieved"},
                   "eval_seconds": time.perf_counter() - t1,
                   # what this line cost: its own scoring plus the model's training
                   "seconds": train_s + time.perf_counter() - t1, **info,
                   "unix_time": time.time()}
            with open(rec_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            done[key] = rec
            print(f"{key}: nDCG@10 {np.mean(list(ndcg.values())):.4f}"
                  + (f" RAG {np.mean(list(rec['rag'].values())):.4f}" if rec["rag"] else "")
                  + f" ({rec['seconds']:.0f}s)", flush=True)
        shutil.rmtree(wdir, ignore_errors=True)

    for ds in args.datasets if args.folds_run else ():
        ids = [s.id for s, _ in data[ds]]
        by = {s.id: s for s, _ in data[ds]}
        if "base" in args.sources:  # one model: every question scored once (plus gold/none)
            unit(f"{ds}/base/all", ds, "base", [], [(ds, [by[i] for i in ids], ("gold", "none"))])
        # fold-major, so a partial run compares every source on the same questions
        for f, held in enumerate(folds(ids, args.folds)):
            for source in args.sources:
                if source == "base":
                    continue
                train_ids = [i for i in ids if i not in set(held)]
                unit(f"{ds}/{label(source)}/fold{f}of{args.folds}", ds, source, train_ids,
                     [(ds, [by[i] for i in held], ())])
    if args.scifact and "base" in args.sources:
        unit(f"{SCIFACT}/base/all", SCIFACT, "base", [], [(SCIFACT, [], ())])
    if args.transfer or args.scifact:
        for ds in args.datasets:
            if args.transfer_from and ds != args.transfer_from:
                continue
            evals = [(o, [s for s, _ in data[o]], ()) for o in args.datasets
                     if o != ds and args.transfer]
            if args.scifact:
                evals.append((SCIFACT, [], ()))
            ids = [s.id for s, _ in data[ds]]
            for source in args.sources:
                if source != "base" and evals:
                    unit(f"{ds}/{label(source)}/all", ds, source, ids, evals)


# ------------------------------------------------------------------ the table

def read_records(paths: list[Path]) -> dict[str, dict]:
    """Unit key -> its latest line of the current ``EVAL_REV`` (a recomputed unit replaces the
    earlier one; lines of an older evaluation are not read)."""
    out: dict[str, dict] = {}
    for p in paths:
        if p.exists():
            for line in p.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    if r.get("eval_rev") == EVAL_REV:
                        out[r["key"]] = r
    return out


def analyse(records_paths: list[Path], n_folds: int) -> dict:
    from scarlet_ray.evaluation.compare import paired_bootstrap

    recs = read_records(records_paths)
    table: dict[str, Any] = {}
    sets = sorted({(r["train_set"], r["eval_set"]) for r in recs.values()
                   if r["source"] != "base"})
    for train_ds, eval_ds in sets:
        per: dict[str, dict[str, dict[str, float]]] = {}
        secs: dict[str, float] = {}
        units: dict[str, int] = {}
        steps: dict[str, dict[str, list[int]]] = {}
        for r in recs.values():
            key, lab = r["key"], r.get("label", r["source"])
            if r["source"] == "base":
                use = key == f"{eval_ds}/base/all/{eval_ds}"
            elif train_ds == eval_ds:
                use = key.startswith(f"{train_ds}/{lab}/fold") and \
                    key.endswith(f"of{n_folds}/{eval_ds}")
            else:
                use = key == f"{train_ds}/{lab}/all/{eval_ds}"
            if not use:
                continue
            m = per.setdefault(lab, {"ndcg@10": {}, "rag": {}})
            m["ndcg@10"].update(r["ndcg@10"])
            m["rag"].update(r["rag"])
            secs[lab] = secs.get(lab, 0.0) + r["seconds"]
            units[lab] = units.get(lab, 0) + 1
            for k in ("best_step", "optimizer_steps"):
                if k in r:
                    steps.setdefault(lab, {}).setdefault(k, []).append(r[k])
        if "base" not in per:
            continue
        rows = {}
        for src, m in per.items():
            row: dict[str, Any] = {"questions": len(m["ndcg@10"]), "models": units[src],
                                   "seconds": secs[src], **steps.get(src, {})}
            for meas in ("ndcg@10", "rag"):
                vals = m[meas]
                if not vals:
                    continue
                row[meas] = float(np.mean(list(vals.values())))
                for ref in ("base", "gold"):
                    if ref == src or ref not in per:
                        continue
                    refv = per[ref][meas]
                    common = sorted(set(vals) & set(refv))
                    if common:
                        row[f"{meas} vs {ref}"] = paired_bootstrap(
                            {k: refv[k] for k in common}, {k: vals[k] for k in common})
            rows[src] = row
        # base, then the sources in SOURCES order, each followed by its variants
        rows = dict(sorted(rows.items(), key=lambda kv: (
            SOURCES.index(kv[0].split("@")[0]) if kv[0].split("@")[0] in SOURCES else 99,
            "@" in kv[0], kv[0])))
        base_other = next((r["rag_other"] for r in recs.values()
                           if r["source"] == "base" and r["eval_set"] == eval_ds
                           and r.get("rag_other")), {})
        table[f"train {train_ds} -> eval {eval_ds}"] = {
            "rows": rows, "rag_gold_passages": _mean(base_other.get("gold")),
            "rag_no_passages": _mean(base_other.get("none"))}
    return table


def _mean(d: dict | None) -> float | None:
    return float(np.mean(list(d.values()))) if d else None


def print_summary(table: dict) -> None:
    for name, t in table.items():
        print(f"\n{name}  (RAG with gold passages {t['rag_gold_passages']}, "
              f"none {t['rag_no_passages']})")
        print(f"  {'source':<14}{'n':>5}{'models':>7}{'nDCG@10':>9}  {'vs base [95%]':<26}"
              f"{'RAG':>7}  {'vs base [95%]':<26}{'s':>6}")
        for src, r in t["rows"].items():
            def cell(meas: str, r: dict = r) -> str:
                c = r.get(f"{meas} vs base")
                if not c:
                    return ""
                return f"{c['mean_diff']:+.3f} [{c['ci95'][0]:+.3f},{c['ci95'][1]:+.3f}]"
            print(f"  {src:<14}{r['questions']:>5}{r['models']:>7}{r.get('ndcg@10', 0):>9.4f}  "
                  f"{cell('ndcg@10'):<26}{r.get('rag', float('nan')):>7.3f}  "
                  f"{cell('rag'):<26}{r['seconds']:>6.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=100, help="first N questions of each file")
    ap.add_argument("--label-temperature", type=float, default=1.0)
    ap.add_argument("--variant", default=None,
                    help="name of a non-default training setting (--set, --label-temperature): "
                         "its models are keyed and tabled as SOURCE@VARIANT beside the defaults")
    ap.add_argument("--no-rag", dest="rag", action="store_false")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 beside a running attribution: 2 x 2 threads on two "
                         "cores made generation 4.5x slower here)")
    ap.add_argument("--no-transfer", dest="transfer", action="store_false")
    ap.add_argument("--no-folds", dest="folds_run", action="store_false",
                    help="only the transfer / SciFact models (a second process beside one "
                         "running the folds)")
    ap.add_argument("--scifact", action="store_true",
                    help="also score base and each all-questions model on SciFact (retrieval)")
    ap.add_argument("--transfer-from", default=None,
                    help="only the transfer models trained on this dataset (one process each)")
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="training override for every trained model, e.g. training.lr=2e-5")
    ap.add_argument("--work", default=None, help="where models are trained (deleted after)")
    ap.add_argument("--records", default=None,
                    help="default: bench/results/value_study_DATASETS_records.jsonl; the table "
                         "reads every value_study_*_records.jsonl there")
    ap.add_argument("--output", default=str(RESULTS / "value_study.json"))
    ap.add_argument("--analyse", action="store_true")
    args = ap.parse_args()
    args.datasets = args.datasets.split(",")
    args.sources = args.sources.split(",")
    if (args.overrides or args.label_temperature != 1.0) and not args.variant and \
            not args.analyse:
        ap.error("--set / --label-temperature change the training: name the models with "
                 "--variant so they sit beside the default ones instead of replacing them")
    if not args.analyse:
        import torch

        torch.set_num_threads(args.threads)
        run_study(args)
    paths = [Path(args.records)] if args.records else sorted(
        RESULTS.glob("value_study_*_records.jsonl"))
    table = analyse(paths, args.folds)
    write_json(args.output, {"table": table, "folds": args.folds,
                             "training": [*DEFAULT_TRAIN, *args.overrides],
                             "label_temperature": args.label_temperature,
                             "unix_time": time.time()})
    print_summary(table)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
