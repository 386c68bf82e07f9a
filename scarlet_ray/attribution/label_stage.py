"""Stage 4 as one plain function: attributions + samples -> ``DIR/train.jsonl``.

Labels are recomputed from the stored utilities with the current ``labels`` config, so another
method (kmeans, kmeans_dp, fixed) needs no new attribution run, only a new output folder (or
``--restart``). The stage is cheap and rewrites its output whole, errors.jsonl included.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from scarlet_ray.attribution.labels import assign_labels, training_example
from scarlet_ray.config import Config
from scarlet_ray.errors import UsageError
from scarlet_ray.records import Sample, read_attributions, read_jsonl, write_jsonl
from scarlet_ray.stagedir import StageOptions, StageRun
from scarlet_ray.stages import StageOutcome

OUTPUTS = ("train.jsonl",)


def run(cfg: Config, attributions: str | Path, samples_path: str | Path, out: str | Path,
        options: StageOptions | None = None) -> StageOutcome:
    with StageRun(Path(out), "label", cfg.dump(), OUTPUTS, options or StageOptions()) as st:
        st.errors.path.unlink(missing_ok=True)  # the stage is rewritten whole; so are its errors
        attrs = read_attributions(attributions)
        rep = read_jsonl(samples_path, Sample, on_error="quarantine")
        st.errors.add(rep.errors, stage="read")
        samples = {s.id: s for s in rep.records}
        matched = sum(a.id in samples for a in attrs)
        if attrs and not matched and not st.options.allow_empty:
            raise UsageError(f"{samples_path}: none of the {len(attrs)} attributed ids in "
                             f"{attributions} is a sample there (the wrong samples file?)")
        lc = cfg.labels
        examples, dropped, errors = [], Counter(), []
        for a in attrs:
            s = samples.get(a.id)
            if s is None:
                dropped["sample_missing"] += 1
                errors.append({"source": str(attributions), "id": a.id, "field": "id",
                               "reason": f"no sample with this id in {samples_path}"})
                continue
            lab = assign_labels(a.utility, lc.method, lc.k, lc.random_state, lc.fixed_top,
                                lc.fixed_bottom)
            a = a.model_copy(update={"label": lab.labels})
            try:
                ex, why = training_example(s, a)
            except ValueError as exc:
                dropped["invalid"] += 1
                errors.append({"source": str(attributions), "id": a.id,
                               "field": "passage_ids", "reason": str(exc)})
                continue
            if ex is None:
                dropped[why or lab.drop_reason or "unknown"] += 1
                continue
            examples.append(ex)
        st.errors.add(errors)
        n = write_jsonl(st.path("train.jsonl"), examples)
        st.counts.update(attributions=len(attrs), samples=len(samples),
                         samples_quarantined=len(rep.errors), examples=n,
                         dropped=dict(dropped), dropped_total=sum(dropped.values()))
        rows = [("attributions", len(attrs)), ("training examples", n)]
        rows += [(f"dropped: {k}", v) for k, v in sorted(dropped.items())]
        return StageOutcome("label", 0, rows, "", st.out)
