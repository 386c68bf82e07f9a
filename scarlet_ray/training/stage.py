"""Stage 5 as one plain function: training examples -> a sentence-transformers folder.

The driver validates the whole file before any worker starts; Ray Train resumes an interrupted
run from its checkpoints, and a folder whose manifest says ``complete`` (same settings) is kept.
"""

from __future__ import annotations

from pathlib import Path

from scarlet_ray.config import Config
from scarlet_ray.errors import UsageError
from scarlet_ray.stagedir import StageOptions, StageRun
from scarlet_ray.stages import StageOutcome
from scarlet_ray.training.data import load_examples
from scarlet_ray.training.validation import split_validation

OUTPUTS = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
           "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json",
           "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling",
           "2_Normalize", "README.md", "training_history.json", "ray_results")


def run(cfg: Config, train_path: str | Path, out: str | Path,
        options: StageOptions | None = None) -> StageOutcome:
    with StageRun(Path(out), "train", cfg.dump(), OUTPUTS, options or StageOptions()) as st:
        if st.was_complete:
            st.counts.update(st.previous.get("counts") or {})
            st.extra.update({k: st.previous[k] for k in ("first_loss", "final_loss")
                             if k in st.previous})
            return StageOutcome("train", 0, [("status", "already complete (--restart to "
                                                        "retrain)"), ("model", str(st.out))],
                                "", st.out)
        tc = cfg.training
        # checked here, before Ray starts: a line without its utilities names itself
        examples = load_examples(train_path, require_scores=tc.loss == "utility_kl")
        st.require_records(len(examples), str(train_path))
        try:
            trainable, held_out = split_validation(examples, tc.validation_fraction, tc.seed)
        except ValueError as e:
            raise UsageError(f"{e} ({train_path})") from None
        per = tc.num_workers * tc.grad_accum
        if tc.batch_size % per:
            raise UsageError(f"training.batch_size: {tc.batch_size} is not divisible by "
                             f"num_workers x grad_accum = {per}")
        if len(trainable) < tc.batch_size:
            held = f" after holding out {len(held_out)} to validate" if held_out else ""
            raise UsageError(f"training.batch_size: {tc.batch_size} exceeds the number of "
                             f"training examples ({len(trainable)}{held}) in {train_path}")
        from scarlet_ray.distributed.train import run_training

        st.models["base"] = cfg.models.retriever
        res = run_training(cfg, train_path, st.out)
        hist = res.history
        first, last = hist[0]["loss"], hist[-1]["loss"]
        avg_eps = sum(h["examples_per_s"] for h in hist) / len(hist)
        st.counts.update(examples=len(examples),
                         optimizer_steps=res.metrics.get("optimizer_steps"),
                         world_size=tc.num_workers,
                         dropped_per_epoch=res.metrics.get("dropped_per_epoch"))
        st.timings["train_s"] = res.seconds
        m = res.metrics
        val_rows: list[tuple[str, object]] = []
        if held_out:
            st.counts["validation_examples"] = len(held_out)
            st.extra.update({k: m.get(k) for k in ("start_val_ndcg", "best_val_ndcg",
                                                    "best_step", "exported_step",
                                                    "stopped_early")})
            val_rows = [
                ("held-out nDCG start -> best", f"{m.get('start_val_ndcg'):.4f} -> "
                 f"{m.get('best_val_ndcg'):.4f} at step {m.get('best_step')}"),
                ("exported weights", "the starting model (no step beat it on held-out "
                 "examples)" if m.get("exported_step") == 0 else
                 f"step {m.get('exported_step')}"
                 + (" (stopped early)" if m.get("stopped_early") else ""))]
        st.extra.update(first_loss=first, final_loss=last, ray_storage=res.storage_path,
                        ray_run_name=res.run_name, resumed_from_steps=res.resumed_from,
                        examples_per_s=avg_eps, backend=tc.backend,
                        precision=res.metrics.get("precision"))
        rows = [
            ("base model", cfg.models.retriever), ("examples", len(examples)),
            ("backend", tc.backend + (f" ZeRO-{tc.zero_stage}" if tc.backend == "deepspeed"
                                      else "")),
            ("workers", tc.num_workers), ("optimizer steps", res.metrics.get("optimizer_steps")),
            ("loss first -> last", f"{first:.4f} -> {last:.4f}"), *val_rows,
            ("examples/s", avg_eps),
            ("resumed from steps", res.resumed_from or "-"), ("seconds", res.seconds),
            ("model", str(st.out))]
        return StageOutcome("train", 0, rows, "", st.out)
