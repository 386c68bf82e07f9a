"""Shared-context statistics on the shared HotpotQA and MuSiQue train seeds (issue 5).

Corpus: both data sets' paragraphs plus the FlashRAG 100-word Wikipedia passages, split into
100-word passages. Knowledge graph: the corpus co-occurrence graph (this machine has no Wikidata
access). For each data set: seeds that yield a context, entities per seed before and after
expansion (the paper's Table 12: 3.4 -> 9.3 on HotpotQA), and the fraction of contexts holding
at least one gold passage, with and without expansion.

    nice python bench/context_stats.py   # -> bench/results/context_stats.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from _common import RESULTS, ROOT, shared_data_dir, write_json

from scarlet_ray.config import ContextConfig
from scarlet_ray.context.build import ContextBuilder, gold_matches, load_corpus
from scarlet_ray.context.corpus_graph import CorpusGraph
from scarlet_ray.context.entities import EntityExtractor
from scarlet_ray.datasets import convert
from scarlet_ray.index.build import ensure
from scarlet_ray.manifest import print_table
from scarlet_ray.models.encoder import load_encoder
from scarlet_ray.models.ner import load_ner


def summarize(seeds, results, by_id_seed) -> dict:
    built = [r for r in results if r.sample is not None]
    n_ent = [len(r.entities) for r in built]
    n_all = [len(r.entities) + len(r.expanded) for r in built]
    with_gold = [r for r in built if by_id_seed[r.seed_id].gold_passage_ids]
    text_hits = [bool(gold_matches(by_id_seed[r.seed_id], r.sample.passages, by_title=False))
                 for r in with_gold]
    gold_total = [len(by_id_seed[r.seed_id].gold_passage_ids) for r in with_gold]
    gold_found = [len({t.casefold() for t in r.sample.meta.get("seed_gold_titles", [])}
                      & {p.title.casefold() for p in r.sample.passages}) for r in with_gold]
    return {
        "seeds": len(seeds),
        "with_context": len(built),
        "dropped_no_entity": len(results) - len(built),
        "entities_per_seed_mean": round(statistics.fmean(n_ent), 3) if n_ent else 0.0,
        "queries_per_seed_mean": round(statistics.fmean(n_all), 3) if n_all else 0.0,
        "expansion_errors": sum(len(r.errors) for r in built),
        "contexts_with_gold_text_or_title": round(
            sum(bool(r.has_gold) for r in with_gold) / max(len(with_gold), 1), 4),
        "contexts_with_gold_text": round(sum(text_hits) / max(len(with_gold), 1), 4),
        "gold_titles_recalled": round(sum(gold_found) / max(sum(gold_total), 1), 4),
        "contexts_with_all_gold_titles": round(
            sum(f == len(r.sample.meta.get("seed_gold_titles", []))
                for f, r in zip(gold_found, with_gold, strict=True)) / max(len(with_gold), 1), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(shared_data_dir()))
    ap.add_argument("--output", default=str(RESULTS / "context_stats.json"))
    ap.add_argument("--index-dir", default=str(ROOT / ".cache" / "context_stats_index"))
    ap.add_argument("--limit", type=int, default=100)
    args = ap.parse_args()
    d = Path(args.data)
    ctx = ContextConfig()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    specs = [f"hotpotqa-corpus:{d / 'hotpotqa/hotpotqa_train_corpus.json'}",
             f"musique-corpus:{d / 'musique/musique_train_corpus.json'}",
             f"flashrag-corpus:{d / 'flashrag/sample_data.jsonl'}"]
    passages, corpus_errors = load_corpus(specs, passage_words=100)
    seeds = {
        "hotpotqa": convert("hotpotqa", str(d / "hotpotqa/hotpotqa_train.json"),
                            limit=args.limit, passage_words=100).records,
        "musique": convert("musique", str(d / "musique/musique_train.json"),
                           limit=args.limit, passage_words=100).records,
    }
    timings["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    nlp = load_ner("en_core_web_sm")
    extractor = EntityExtractor(nlp, exclude=ctx.entity_exclude)
    graphs = {"corpus_titles": CorpusGraph(passages, nlp=None, max_related=ctx.max_related)}
    timings["graph_titles_s"] = time.perf_counter() - t
    t = time.perf_counter()
    graphs["corpus_ner"] = CorpusGraph(passages, nlp=nlp, max_related=ctx.max_related,
                                       progress=True)
    timings["graph_ner_s"] = time.perf_counter() - t

    t = time.perf_counter()
    encoder = load_encoder("all-minilm-l6-v2")
    index = ensure(args.index_dir, passages, encoder, "all-minilm-l6-v2", 100, batch_size=64)
    timings["index_s"] = time.perf_counter() - t

    result: dict = {
        "corpus_passages": len(passages), "corpus_errors": len(corpus_errors),
        "index_reloaded": index.loaded_from_disk,
        "knowledge": "corpus co-occurrence graph (no Wikidata network on this machine)",
        "graphs": {k: g.stats() for k, g in graphs.items()},
        "config": {"max_related": ctx.max_related, "passages_per_entity": ctx.passages_per_entity,
                   "context_size": ctx.context_size, "entity_exclude": ctx.entity_exclude,
                   "retriever": "all-minilm-l6-v2", "ner": "en_core_web_sm"},
        "datasets": {},
    }
    rows = []
    for name, ss in seeds.items():
        t = time.perf_counter()
        ents = extractor.extract_seeds(ss)
        by_id = {s.id: s for s in ss}
        per: dict = {}
        for variant, kg in (("no_expansion", None), *graphs.items()):
            b = ContextBuilder(index, encoder, extractor, kg, ctx.passages_per_entity,
                               ctx.context_size)
            per[variant] = summarize(ss, b.build(ss, expand=kg is not None, entities=ents), by_id)
        timings[f"{name}_s"] = time.perf_counter() - t
        result["datasets"][name] = per
        for variant, s in per.items():
            rows.append((name, variant, f"{s['with_context']}/{s['seeds']}",
                         s["entities_per_seed_mean"], s["queries_per_seed_mean"],
                         s["contexts_with_gold_text_or_title"], s["contexts_with_gold_text"],
                         s["gold_titles_recalled"]))
    result["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    result["host"] = {"machine": platform.machine(), "python": platform.python_version(),
                      "note": "2 shared CPU cores, heavily contended by other jobs"}
    out = write_json(args.output, result)
    print_table("shared-context statistics (corpus graph)", rows,
                ("data", "expansion", "seeds with context", "entities/seed", "queries/seed",
                 "ctx with gold (text|title)", "ctx with gold (text)", "gold titles recalled"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
