"""`scarlet index build` measured on this machine, every figure from one run of this script.

1. Encoding throughput: the same corpus (SciFact abstracts, all-MiniLM-L6-v2) encoded in one
   process and by Ray Data with 2 encoder actors; passages/s of the encode phase and the wall
   time of the whole command (Ray's start and actor set-up included).
2. Peak memory of the build at two corpus sizes (passages made from SciFact sentences; a
   config-built 2-layer encoder so the larger build takes minutes, not hours): the manifest's
   peak RSS of the process, beside what holding the vectors and texts would have cost.
3. SciFact (train split, 5,183 documents, MiniLM): nDCG@10 and Recall@100 of
   `scarlet evaluate retrieval --index` with each index kind against the exact one, query time.

    python bench/index_build.py [--parts throughput,memory,scifact]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, shared_data_dir, write_json

SCARLET = str(Path(sys.executable).parent / "scarlet")


def scarlet(*argv: str) -> float:
    """Run the CLI as a user would; returns its wall time (raises on a non-zero exit)."""
    t = time.perf_counter()
    res = subprocess.run([SCARLET, *argv], capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        raise SystemExit(f"scarlet {' '.join(argv)}: exit {res.returncode}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def manifest(d: Path) -> dict[str, Any]:
    return json.loads((d / "manifest.json").read_text())


def scifact_jsonl(out: Path, limit: int | None = None) -> Path:
    """SciFact's corpus as our corpus JSONL (no chunking: documents keep their ids)."""
    src = shared_data_dir() / "scifact" / "corpus.jsonl"
    with open(src) as fh, open(out, "w") as w:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            o = json.loads(line)
            w.write(json.dumps({"id": o["_id"], "title": o["title"], "text": o["text"]}) + "\n")
    return out


def throughput(tmp: Path, n: int) -> dict[str, Any]:
    corpus = scifact_jsonl(tmp / "tp.jsonl", n)
    out: dict[str, Any] = {"passages": n, "encoder": "all-minilm-l6-v2"}
    for runner, sets in (("local", []), ("ray", ["--set", "index.runner=ray", "--set",
                                                 "index.num_actors=2", "--set",
                                                 "index.num_cpus_per_actor=1"])):
        d = tmp / f"tp-{runner}"
        wall = scarlet("index", "build", "--corpus", str(corpus), "--output", str(d),
                       "--set", "index.shard_size=256", *sets)
        m = manifest(d)
        enc_s = m["timings"]["encode_s"]
        out[runner] = {"wall_s": round(wall, 1), "encode_s": round(enc_s, 1),
                       "passages_per_s": round(n / enc_s, 1),
                       "peak_rss_mb": m["peak_rss_mb"]}
        print(runner, out[runner], flush=True)
    out["ray_overhead_s"] = round(out["ray"]["wall_s"] - out["local"]["wall_s"], 1)
    return out


def tiny_bert(root: Path) -> Path:
    """A 2-layer, 384-wide BERT with MiniLM's tokenizer, random weights, as an ST folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from scarlet_ray.models.encoder import resolve_encoder_path

    tok = AutoTokenizer.from_pretrained(resolve_encoder_path("all-minilm-l6-v2"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=384, num_hidden_layers=2,
                         num_attention_heads=6, intermediate_size=768)).save_pretrained(root / "hf")
    tok.save_pretrained(root / "hf")
    word = Transformer(str(root / "hf"), max_seq_length=128)
    st = SentenceTransformer(modules=[word, Pooling(384, "mean"), Normalize()], device="cpu")
    st.save(str(root / "st"))
    return root / "st"


def sentences_corpus(path: Path, n: int, seed: int = 0) -> int:
    """``n`` ~100-word passages of SciFact sentences drawn at random; returns the text bytes."""
    import re

    src = shared_data_dir() / "scifact" / "corpus.jsonl"
    with open(src) as fh:
        sents = [s for line in fh for s in re.split(r"(?<=\.)\s+", json.loads(line)["text"])
                 if len(s.split()) > 5]
    rng = random.Random(seed)
    total = 0
    with open(path, "w") as w:
        for i in range(n):
            text, words = [], 0
            while words < 100:
                s = rng.choice(sents)
                text.append(s)
                words += len(s.split())
            line = json.dumps({"id": f"s{i}", "title": f"Passage {i}", "text": " ".join(text)})
            total += len(line)
            w.write(line + "\n")
    return total


def memory(tmp: Path, sizes: list[int]) -> dict[str, Any]:
    enc = tiny_bert(tmp / "enc")
    rows = []
    for n in sizes:
        corpus = tmp / f"mem-{n}.jsonl"
        text_bytes = sentences_corpus(corpus, n)
        d = tmp / f"mem-{n}"
        wall = scarlet("index", "build", "--corpus", str(corpus), "--output", str(d),
                       "--set", f"models.retriever={enc}", "--set", "index.batch_size=128")
        m = manifest(d)
        rows.append({"passages": n, "wall_s": round(wall, 1), "peak_rss_mb": m["peak_rss_mb"],
                     "corpus_file_mb": round(text_bytes / 2**20, 1),
                     "fp32_vectors_mb": round(n * 384 * 4 / 2**20, 1),
                     "shards_mb": round(m["bytes"]["shards"] / 2**20, 1),
                     "store_mb": round(m["bytes"]["store"] / 2**20, 1),
                     "passages_per_s": round(n / m["timings"]["encode_s"], 1)})
        print(rows[-1], flush=True)
    return {"encoder": "2-layer BERT (hidden 384, random weights, max_seq 128)", "rows": rows}


def scifact(tmp: Path) -> dict[str, Any]:
    beir = shared_data_dir() / "scifact"
    corpus = scifact_jsonl(tmp / "scifact.jsonl")
    ix = tmp / "scifact-index"
    t_build = scarlet("index", "build", "--corpus", str(corpus), "--output", str(ix))
    m = manifest(ix)
    rows = []

    def evaluate(name: str, *extra: str) -> None:
        out = tmp / f"eval-{name}"
        wall = scarlet("evaluate", "retrieval", "--model", "all-minilm-l6-v2", "--beir",
                       str(beir), "--split", "train", "--output", str(out), *extra)
        met = json.loads((out / "metrics.json").read_text())
        man = manifest(out)
        search_s = man["timings"]["search_and_score_s"]
        rec = json.loads((ix / "index.json").read_text()) if extra else None
        rows.append({"index": name, "ndcg@10": met["ndcg@10"], "recall@100": met["recall@100"],
                     "queries": met["n_queries"], "search_and_score_s": round(search_s, 2),
                     "ann_bytes": rec["bytes"]["ann"] if rec else None, "wall_s": round(wall, 1)})
        print(rows[-1], flush=True)

    evaluate("own exact index (no --index)")
    evaluate("flat", "--index", str(ix))
    for kind, sets in (("ivf nprobe=4", ["index.kind=ivf", "index.nprobe=4"]),
                       ("hnsw m=16 ef=32", ["index.kind=hnsw", "index.m=16",
                                            "index.ef_search=32"]),
                       ("ivfpq 16B rerank=1", ["index.kind=ivfpq", "index.pq_m=16",
                                               "index.rerank=1"]),
                       ("ivfpq 16B rerank=4", ["index.kind=ivfpq", "index.pq_m=16",
                                               "index.rerank=4"])):
        scarlet("index", "build", "--corpus", str(corpus), "--output", str(ix),
                *[x for s in sets for x in ("--set", s)])
        evaluate(kind, "--index", str(ix))
    return {"encoder": "all-minilm-l6-v2", "documents": m["counts"]["passages"],
            "build_wall_s": round(t_build, 1), "encode_s": round(m["timings"]["encode_s"], 1),
            "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--parts", default="throughput,memory,scifact")
    ap.add_argument("--throughput-passages", type=int, default=1000)
    ap.add_argument("--memory-sizes", default="20000,100000")
    ap.add_argument("--output", default=str(RESULTS / "index_build.json"))
    args = ap.parse_args()
    parts = args.parts.split(",")
    out: dict[str, Any] = {"machine": {"cpu_count": os.cpu_count(),
                                       "platform": platform.platform()}}
    with tempfile.TemporaryDirectory(prefix="scarlet-index-bench-") as t:
        tmp = Path(t)
        if "throughput" in parts:
            out["throughput"] = throughput(tmp, args.throughput_passages)
        if "memory" in parts:
            out["memory"] = memory(tmp, [int(x) for x in args.memory_sizes.split(",")])
        if "scifact" in parts:
            out["scifact"] = scifact(tmp)
    write_json(args.output, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
