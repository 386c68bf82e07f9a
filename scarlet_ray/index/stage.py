"""``scarlet index build`` as a stage: the build inside the shared output-folder discipline.

``StageRun`` gives the folder its lock, manifest (``complete`` only after the record is
written), errors.jsonl (quarantined corpus lines) and interrupt handling; ``index.build`` does
the work. The stage's fingerprint is the encoder and the chunking (``models.retriever``,
``data.passage_words``) and the corpus specs; the ANN settings are not in it, because a rerun
with another ``index.kind`` rebuilds only the ANN part over the same shards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config
from scarlet_ray.errors import UsageError
from scarlet_ray.stagedir import StageOptions, StageRun
from scarlet_ray.stages import StageOutcome


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def run(cfg: Config, corpus_specs: Sequence[str], out: str | Path,
        options: StageOptions | None = None, progress: bool = True) -> StageOutcome:
    from scarlet_ray.evaluation.stages import resolve_device
    from scarlet_ray.index.build import OUTPUTS, build, iter_specs, peak_rss_mb, specs_signature
    from scarlet_ray.index.folder import encoder_settings
    from scarlet_ray.models.encoder import load_encoder

    specs = list(corpus_specs or [])
    if not specs:
        raise UsageError("--corpus: at least one corpus file is needed")
    ix = cfg.index
    with StageRun(Path(out), "index", cfg.dump(), OUTPUTS, options or StageOptions(),
                  args={"corpus": specs}) as st:
        t0 = time.perf_counter()
        signature = specs_signature(specs)
        encoder = load_encoder(cfg.models.retriever, device=resolve_device(cfg.models.device))
        settings = encoder_settings(encoder, cfg.data.passage_words)
        st.timings["load_encoder_s"] = time.perf_counter() - t0
        st.models["retriever"] = cfg.models.retriever
        encode_with: Any = None
        if ix.runner == "ray":
            del encoder  # the actors hold their own
            encoder = None
            from scarlet_ray.distributed.index import encode_shards

            def encode_with(folder: Path, shards: Sequence[int], n: int, size: int) -> Any:
                return encode_shards(cfg, folder, shards, n, size, settings, st.extra)

        rec = build(st.out, iter_specs(specs, cfg.data.passage_words), signature, settings,
                    ix.ann_spec(), encoder_ref=cfg.models.retriever,
                    load_encoder=lambda: encoder, shard_size=ix.shard_size,
                    batch_size=ix.batch_size, rerank=ix.rerank, encode_with=encode_with,
                    on_errors=lambda errs: st.errors.add(errs),
                    progress=progress, source_label=" ".join(specs))
        timings = rec.pop("_timings")
        st.timings.update(timings)
        c = rec["counts"]
        st.counts.update(c)
        st.extra.update(index_fingerprint=rec["fingerprint"], runner=ix.runner,
                        peak_rss_mb=round(peak_rss_mb(), 1), ann=rec["ann"], bytes=rec["bytes"])
        rate = c["encoded_now"] / timings["encode_s"] if c["encoded_now"] else None
        rows: list[tuple[str, Any]] = [
            ("passages", f"{c['passages']:,} in {c['shards']} shards"
                         f" ({c['encoded_now']:,} encoded now)"),
            ("refused", f"{c['quarantined']} bad lines, {c['refused']} conflicting ids, "
                        f"{c['duplicates']} exact duplicates dropped"),
            ("encoder", f"{cfg.models.retriever} (dim {rec['dim']}, fingerprint "
                        f"{rec['fingerprint']})"),
            ("encode", f"{timings['encode_s']:.1f} s" + (f", {rate:,.1f} passages/s "
                                                        f"({ix.runner})" if rate else "")),
            ("index", f"{rec['ann']['kind']}, {_mb(rec['bytes']['ann'])} in memory and on disk"
                      if rec["ann"]["kind"] != "flat" else "flat (exact search over the shards)"),
            ("on disk", f"shards {_mb(rec['bytes']['shards'])}, passage store "
                        f"{_mb(rec['bytes']['store'])}"),
            ("peak memory", f"{peak_rss_mb():,.0f} MB (this process)"),
        ]
        return StageOutcome("index_build", 0, rows, "", st.out)
