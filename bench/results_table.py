"""Markdown results table of a `scarlet run` directory: retrieval and RAG per retriever.

    python bench/results_table.py runs/quickstart

Reads RUN_DIR/eval/{retrieval,rag}_<variant>/metrics.json as written by the run; prints what is
there and marks what is missing, never a number it did not read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scarlet_ray.layout import RunLayout

NAMES = {"base": "base MiniLM", "trained": "MiniLM + SCARLet labels",
         "gold": "MiniLM + gold labels (ceiling)"}


def _read(p: Path) -> dict | None:
    return json.loads(p.read_text()) if p.exists() else None


def table(run_dir: Path) -> str:
    lay = RunLayout(run_dir)
    rows = ["| retriever | nDCG@10 | Recall@10 | MRR@10 | RAG accuracy (top-3) |",
            "|---|---|---|---|---|"]
    floor = ceiling = None
    for variant, name in NAMES.items():
        r = _read(lay.eval_run("retrieval", variant) / "metrics.json")
        g = _read(lay.eval_run("rag", variant) / "metrics.json")
        cond = (g or {}).get("conditions", {})
        floor = floor or cond.get("none")
        ceiling = ceiling or cond.get("gold")
        acc = cond.get("retrieved", {}).get("overall")
        fmt = (lambda x: f"{x:.3f}" if isinstance(x, float | int) else "not run")  # noqa: E731
        rows.append(f"| {name} | {fmt((r or {}).get('ndcg@10'))} | "
                    f"{fmt((r or {}).get('recall@10'))} | {fmt((r or {}).get('mrr@10'))} | "
                    f"{fmt(acc)} |")
    n = (_read(lay.eval_run("rag", "base") / "metrics.json") or {}).get("n_samples")
    if floor:
        rows.append(f"| no retrieval (floor) | | | | {floor['overall']:.3f} |")
    if ceiling:
        rows.append(f"| gold passages (ceiling) | | | | {ceiling['overall']:.3f} |")
    return "\n".join(rows) + (f"\n\n{n} held-out questions." if n else "")


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")))
