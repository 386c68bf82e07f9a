"""Markdown results table of a `scarlet run` directory: per evaluation set, RAG with each
retriever (the SCARLet paper's Table 2), closed corpus and, where it ran, pooled corpus; then
retrieval nDCG@10 per set.

    python bench/results_table.py runs/quickstart

Reads RUN_DIR/eval/<set>/{rag,rag-pooled,retrieval}_<variant>/metrics.json as written by the run
(the same reading as the HTML report); prints what is there and marks what is missing
"not run", never a number it did not read.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scarlet_ray.evaluation.report import (
    RESULT_HEADERS,
    VARIANT_NAMES,
    eval_sets,
    markdown_table,
    results_rows,
    retrieval_rows,
)

TITLES = {"closed": "RAG, closed corpus (each set retrieves from its own corpus)",
          "pooled": "RAG, pooled corpus (one corpus pooled from all sets)"}


def table(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    sets = eval_sets(run_dir)
    if not sets:
        return f"{run_dir}: no evaluation sets (eval/<set>/ or eval_sets/<set>/): not run"
    parts = []
    for corpus, title in TITLES.items():
        rows = results_rows(run_dir, corpus, sets)
        if rows is None:
            if corpus == "closed":
                parts.append(f"### {title}\n\nnot run")
            continue
        parts.append(f"### {title}\n\n{markdown_table(RESULT_HEADERS, rows)}")
    ret = retrieval_rows(run_dir, sets)
    if ret and any(s.retrieval for s in sets):
        parts.append("### Retrieval, nDCG@10\n\n"
                     + markdown_table(["set", "queries", *VARIANT_NAMES.values()], ret))
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")))
