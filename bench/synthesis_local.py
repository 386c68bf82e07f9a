"""How many local-backend (SmolLM2) samples pass the checks, per task, on shared HotpotQA contexts.

Builds N contexts from the shared HotpotQA paragraphs, runs ``scarlet synthesize`` with the local
backend and writes ``result.json`` (per-task accepted / rejected reasons, timings) beside the
stage outputs. Structured output (the sample's JSON schema as an xgrammar grammar) is on unless
``--no-structured-output``; ``--prefill`` then prefills only the [YES]/[NO] check call. Example:
  OMP_NUM_THREADS=1 nice python bench/synthesis_local.py --output /tmp/synth-local --prefill
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import shared_data_dir, write_json

from scarlet_ray import cli
from scarlet_ray.datasets import convert
from scarlet_ray.manifest import print_table, read_manifest
from scarlet_ray.records import Sample, write_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(shared_data_dir()))
    ap.add_argument("--output", required=True)
    ap.add_argument("--contexts", type=int, default=3)
    ap.add_argument("--passages", type=int, default=4)
    ap.add_argument("--words", type=int, default=60)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--prefill", action="store_true")
    ap.add_argument("--no-structured-output", dest="structured_output", action="store_false",
                    help="ask in prose only, without the JSON schema (the old behaviour)")
    ap.add_argument("--cache", default=None, help="LLM cache JSONL to reuse (re-judge for free)")
    a = ap.parse_args()
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    res = convert("hotpotqa", str(Path(a.data) / "hotpotqa" / "hotpotqa_train.json"),
                  limit=a.contexts, passage_words=a.words)
    ctx = [Sample(id=s.id, task=s.task, instruction=s.instruction, input=s.input,
                  output=s.output, passages=s.passages[:a.passages]) for s in res.records]
    write_jsonl(out / "contexts.jsonl", ctx)
    t0 = time.time()
    rc = cli.main(["synthesize", "--contexts", str(out / "contexts.jsonl"), "--output",
                   str(out / "stage"), "--set", "synthesis.backend=local",
                   "--set", f"synthesis.max_tokens={a.max_tokens}",
                   "--set", f"synthesis.temperature={a.temperature}",
                   "--set", f"synthesis.prefill={str(a.prefill).lower()}",
                   "--set", f"synthesis.structured_output={str(a.structured_output).lower()}",
                   *(["--set", f"synthesis.cache_path={a.cache}"] if a.cache else [])])
    wall = time.time() - t0
    m = read_manifest(out / "stage")
    result = {"rc": rc, "wall_s": round(wall, 1), "args": vars(a), "counts": m["counts"],
              "usage": m["usage"], "timings": m["timings"]}
    write_json(out / "result.json", result)
    bt = m["counts"]["by_task"]
    print_table(f"local synthesis, {a.contexts} contexts, prefill={a.prefill}, "
                f"structured_output={a.structured_output}",
                [(t, v["accepted"], v["rejected"], v["failed"],
                  ", ".join(f"{k}={n}" for k, n in v["rejected_reasons"].items()) or "-")
                 for t, v in bt.items()],
                headers=("task", "accepted", "rejected", "failed", "reasons"))
    print(f"wall {wall:.0f}s; generated tokens {m['usage']['completion_tokens']}")


if __name__ == "__main__":
    main()
