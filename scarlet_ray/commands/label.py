"""``scarlet label``: attributions + samples -> DIR/train.jsonl (FlagEmbedding examples).

Labels are recomputed from the stored utilities with the current ``labels`` config, so a
different method (kmeans, kmeans_dp, fixed) needs no new attribution run. Dropped samples are
counted by reason in the manifest. The output is rewritten atomically: reruns are idempotent.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from scarlet_ray.attribution.labels import assign_labels, training_example
from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table, write_manifest
from scarlet_ray.records import Sample, append_errors, read_attributions, read_jsonl, write_jsonl


def main(cfg: Config, args: argparse.Namespace) -> int:
    out = Path(args.output)
    attrs = read_attributions(args.attributions)
    errors_path = out / "errors.jsonl"
    if errors_path.exists():
        errors_path.unlink()  # the stage is rewritten whole; so are its errors
    rep = read_jsonl(args.samples, Sample, on_error="quarantine", errors_path=errors_path)
    samples = {s.id: s for s in rep.records}
    lc = cfg.labels
    examples, dropped, errors = [], Counter(), []
    for a in attrs:
        s = samples.get(a.id)
        if s is None:
            dropped["sample_missing"] += 1
            errors.append({"source": str(args.attributions), "id": a.id, "field": "id",
                           "reason": "no sample with this id in " + str(args.samples)})
            continue
        lab = assign_labels(a.utility, lc.method, lc.k, lc.random_state, lc.fixed_top,
                            lc.fixed_bottom)
        a = a.model_copy(update={"label": lab.labels})
        try:
            ex, why = training_example(s, a)
        except ValueError as exc:
            dropped["invalid"] += 1
            errors.append({"source": str(args.attributions), "id": a.id, "field": "passage_ids",
                           "reason": str(exc)})
            continue
        if ex is None:
            dropped[why or lab.drop_reason or "unknown"] += 1
            continue
        examples.append(ex)
    if errors:
        append_errors(errors_path, errors)
    n = write_jsonl(out / "train.jsonl", examples)
    counts = {"attributions": len(attrs), "samples": len(samples),
              "samples_quarantined": len(rep.errors), "examples": n,
              "dropped": dict(dropped), "dropped_total": sum(dropped.values())}
    write_manifest(out, "label", config=cfg.dump(), counts=counts)
    rows = [("attributions", len(attrs)), ("training examples", n)]
    rows += [(f"dropped: {k}", v) for k, v in sorted(dropped.items())]
    print_table("scarlet label", rows, headers=("", "count"))
    return 0
