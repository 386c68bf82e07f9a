"""Peak memory and speed of streaming a KILT knowledge source into corpus passages.

The real ``kilt_knowledgesource.json`` is 5.9 million pages (35 GB), so ``write_kilt_corpus``
must run in memory that does not grow with the file. This bench writes a deterministic
KILT-format file of synthetic pages (default 200,000; a few paragraphs each, with section
markers, bullets, anchors and history as the real file has, and now and then a long page) to a
temporary folder, streams it through ``write_kilt_corpus`` in a child process, and reports the
child's peak RSS (``ru_maxrss``) next to that of a child that only imports the module (the
interpreter's own share), plus passages/s and the file size. The generated files are deleted.

    python bench/kilt_wiki_memory.py [--pages 200000]   # -> bench/results/kilt_wiki_memory.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, write_json

from scarlet_ray.manifest import print_table

VOCAB = [f"w{i}" for i in range(5000)] + ["the", "of", "and", "in", "a", "to", "was", "is"]


def synthetic_page(i: int, rng: random.Random) -> dict:
    """A page shaped like the knowledge source's: title paragraph, prose, sections, bullets."""
    def prose(n: int) -> str:
        start = rng.randrange(len(VOCAB) - n)
        return " ".join(VOCAB[start : start + n]) + ".\n"

    title = f"Page {i}"
    paras = [title + "\n", prose(rng.randint(30, 120))]
    n_sections = 50 if i % 20_000 == 7 else rng.randint(1, 3)  # a long page now and then
    for s in range(n_sections):
        paras.append(f"Section::::Part {s}.\n")
        paras.append(prose(rng.randint(20, 90)))
        if rng.random() < 0.5:
            paras += [f"BULLET::::- {prose(rng.randint(3, 12))}" for _ in range(rng.randint(1, 4))]
    return {"_id": f"{i:08x}", "wikipedia_id": str(1000 + i), "wikipedia_title": title,
            "text": paras,
            "anchors": [{"paragraph_id": 1, "start": 0, "end": 2, "text": "w1", "href": "W1",
                         "wikipedia_title": "W1", "wikipedia_id": "1"}],
            "categories": "Synthetic,Bench",
            "history": {"revid": i, "parentid": 0, "pageid": 1000 + i, "pre_dump": True,
                        "timestamp": "2019-07-01T00:00:00Z", "url": f"https://en.w/?id={i}"}}


def generate(path: Path, pages: int, seed: int = 42) -> int:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(pages):
            fh.write(json.dumps(synthetic_page(i, rng)) + "\n")
    return path.stat().st_size


CHILD = """
import json, sys, time
from scarlet_ray.datasets.kilt_wiki import write_kilt_corpus
if sys.argv[1] == "import-only":
    from scarlet_ray import evalsets  # noqa: F401  (the pipeline's import too)
    print(json.dumps({}))
    raise SystemExit
t = time.perf_counter()
if sys.argv[1] == "pipeline":  # what `scarlet run`'s inputs step does with data.corpus
    from scarlet_ray.evalsets import stream_corpora
    from scarlet_ray.records import write_jsonl
    errors = []
    n = write_jsonl(sys.argv[3], stream_corpora([sys.argv[2]], ["kilt-wikipedia"], 100, errors,
                                                "data"))
    counts = {"pages": None, "passages": n, "skipped": len(errors)}
else:
    counts = write_kilt_corpus(sys.argv[2], sys.argv[3])
print(json.dumps({**counts, "seconds": time.perf_counter() - t}))
"""


def child_run(*args: str) -> tuple[dict, int]:
    """Run CHILD in a fresh interpreter; its JSON output and its peak RSS in KiB."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          check=True)
    # RUSAGE_CHILDREN holds the largest peak among waited-for children: measure in order of
    # growing footprint (import-only first) so each reading is this child's own
    return json.loads(proc.stdout), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200_000)
    ap.add_argument("--output", default=str(RESULTS / "kilt_wiki_memory.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kilt_wiki_bench_", dir="/tmp") as tmp:
        src, dst = Path(tmp) / "kilt_knowledgesource.json", Path(tmp) / "corpus.jsonl"
        t = time.perf_counter()
        size = generate(src, args.pages)
        gen_s = time.perf_counter() - t
        _, base_kib = child_run("import-only")
        counts, peak_kib = child_run("convert", str(src), str(dst))
        out_size = dst.stat().st_size
        dst.unlink()
        pipe, pipe_kib = child_run("pipeline", str(src), str(dst))
    result = {
        "pages": counts["pages"], "passages": counts["passages"], "skipped": counts["skipped"],
        "input_bytes": size, "output_bytes": out_size, "generate_s": round(gen_s, 2),
        "convert_s": round(counts["seconds"], 2),
        "passages_per_s": round(counts["passages"] / counts["seconds"]),
        "pages_per_s": round(counts["pages"] / counts["seconds"]),
        "input_mb_per_s": round(size / 2**20 / counts["seconds"], 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "import_only_rss_mib": round(base_kib / 1024, 1),
        "pipeline_inputs_step_s": round(pipe["seconds"], 2),
        "pipeline_inputs_step_passages": pipe["passages"],
        "pipeline_inputs_step_peak_rss_mib": round(pipe_kib / 1024, 1),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    write_json(args.output, result)
    print_table("KILT knowledge source -> corpus JSONL (streamed, child process)",
                [(k, v) for k, v in result.items()])


if __name__ == "__main__":
    main()
