"""Stage 1: seeds -> shared contexts (DESIGN.md section 5).

Per seed: spaCy entities of input and ground truth; one-hop neighbours from the knowledge graph
("label: description"); top ``passages_per_entity`` passages per query from the dense index;
merged by best score into the top ``context_size`` passages. Each output line is the seed as a
``Sample`` whose passages are the shared context, with provenance (which query brought which
passage). Resumable: seeds already in ``contexts.jsonl`` (or recorded as dropped) are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scarlet_ray.index.folder import IndexFolder
    from scarlet_ray.stagedir import StageRun

from scarlet_ray.context.corpus_graph import normalize
from scarlet_ray.context.entities import EntityExtractor
from scarlet_ray.context.graph import KnowledgeGraph, KnowledgeGraphError
from scarlet_ray.context.index import encode_texts
from scarlet_ray.records import (
    CorpusPassage,
    Passage,
    RecordError,
    Sample,
    completed_ids,
    iter_jsonl_objects,
    read_jsonl,
    repair_tail,
    write_jsonl,
)

log = logging.getLogger(__name__)
NO_ENTITY = "no named entity in input or output"


# ---------------------------------------------------------------- inputs

def _split_spec(spec: str, kind: str) -> tuple[str | None, str]:
    """``FORMAT:PATH`` with a known format of the right kind, else (None, spec)."""
    from scarlet_ray.datasets import FORMATS

    fmt, sep, path = spec.partition(":")
    if sep and fmt in FORMATS:
        if FORMATS[fmt].kind not in kind.split("|"):
            raise ValueError(f"{spec}: format {fmt!r} reads {FORMATS[fmt].kind}, not {kind}")
        return fmt, path
    return None, spec


def load_corpus(specs: Sequence[str], passage_words: int | None = None
                ) -> tuple[list[CorpusPassage], list[RecordError]]:
    """Passages of all corpus specs (our JSONL, or ``FORMAT:PATH``), with quarantined lines.

    Ids must be unique across files; an exact duplicate passage is kept once.
    """
    from scarlet_ray.datasets import convert

    passages: list[CorpusPassage] = []
    errors: list[RecordError] = []
    where: dict[str, tuple[str, CorpusPassage]] = {}
    for spec in specs:
        fmt, path = _split_spec(spec, "corpus")
        if not Path(path).exists():
            raise FileNotFoundError(path)
        if fmt is not None:
            res = convert(fmt, path, passage_words=passage_words)
            recs, errs = res.records, res.skipped
        else:
            rep = read_jsonl(path, CorpusPassage, on_error="quarantine")
            recs, errs = rep.records, rep.errors
        errors.extend(errs)
        for p in recs:
            if p.id in where:
                src, old = where[p.id]
                if (old.title, old.text) == (p.title, p.text):
                    continue
                raise ValueError(f"{path}: id: passage id {p.id!r} already used by {src} "
                                 "with a different text")
            where[p.id] = (path, p)
            passages.append(p)
    if not passages:
        raise ValueError(f"corpus {list(specs)}: no passages")
    return passages, errors


def load_seeds(spec: str, passage_words: int | None = None
               ) -> tuple[list[Sample], list[RecordError]]:
    """Seeds from samples JSONL (passages optional) or ``FORMAT:PATH`` of a seed format."""
    from scarlet_ray.datasets import convert

    fmt, path = _split_spec(spec, "samples|seeds")
    if not Path(path).exists():
        raise FileNotFoundError(path)
    if fmt is not None:
        res = convert(fmt, path, passage_words=passage_words)
        return list(res.records), list(res.skipped)  # type: ignore[arg-type]
    rep = read_jsonl(path, Sample, on_error="quarantine", require_passages=False)
    return rep.records, rep.errors


# ---------------------------------------------------------------- the builder

@dataclass
class SeedResult:
    seed_id: str
    sample: Sample | None
    entities: list[str]
    expanded: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    has_gold: bool | None = None  # None: the seed had no gold passages to look for


def gold_matches(seed: Sample, context: Sequence[CorpusPassage], by_title: bool = True
                 ) -> list[str]:
    """Context passage ids that are the seed's own gold passages: same text, or (``by_title``)
    a passage of the same article (same title, e.g. another 100-word chunk of it)."""
    gold = [p for p in seed.passages if p.id in set(seed.gold_passage_ids)]
    texts = {normalize(p.text) for p in gold}
    titles = {p.title.casefold().strip() for p in gold if p.title.strip()} if by_title else set()
    return [c.id for c in context
            if normalize(c.text) in texts or (c.title.strip() and c.title.casefold().strip()
                                              in titles)]


class ContextBuilder:
    """Entities -> expansion -> retrieval -> merged shared context, a batch of seeds at a time."""

    def __init__(self, index: IndexFolder, encoder: Any, extractor: EntityExtractor,
                 kg: KnowledgeGraph | None, passages_per_entity: int = 10,
                 context_size: int = 10, encode_batch_size: int = 64):
        self.index = index
        self.encoder = encoder
        self.extractor = extractor
        self.kg = kg
        self.k = passages_per_entity
        self.context_size = context_size
        self.encode_batch_size = encode_batch_size

    def expand(self, seed_id: str, entities: Sequence[str]
               ) -> tuple[list[str], dict[str, str], list[dict[str, Any]]]:
        """Neighbour queries of a seed's entities; a failing lookup is recorded, not raised."""
        expanded: list[str] = []
        linked: dict[str, str] = {}
        errors: list[dict[str, Any]] = []
        if self.kg is None:
            return expanded, linked, errors
        seen = {e.casefold() for e in entities}
        for e in entities:
            try:
                node = self.kg.link(e)
                if node is None:
                    continue
                linked[e] = node
                neighbours = self.kg.neighbours(node)
            except KnowledgeGraphError as exc:
                errors.append({"source": "knowledge", "id": seed_id, "field": "expand",
                               "entity": e, "reason": str(exc)})
                continue
            for n in neighbours:
                if n.casefold() not in seen:
                    seen.add(n.casefold())
                    expanded.append(n)
        return expanded, linked, errors

    def build(self, seeds: Sequence[Sample], expand: bool = True,
              entities: Sequence[list[str]] | None = None) -> list[SeedResult]:
        if entities is None:
            entities = self.extractor.extract_seeds(seeds)
        results: list[SeedResult] = []
        queries: list[str] = []
        plans: list[tuple[Sample, list[str], list[str], dict[str, str], int, int]] = []
        for seed, ents in zip(seeds, entities, strict=True):
            if not ents:
                results.append(SeedResult(seed.id, None, [], errors=[{
                    "source": "entities", "id": seed.id, "field": "entities",
                    "reason": NO_ENTITY}]))
                continue
            exp, linked, errs = self.expand(seed.id, ents) if expand else ([], {}, [])
            start = len(queries)
            queries.extend(list(ents) + exp)
            plans.append((seed, list(ents), exp, linked, start, len(queries)))
            results.append(SeedResult(seed.id, None, list(ents), exp, errs))
        if not plans:
            return results
        q_emb = encode_texts(self.encoder, queries, self.encode_batch_size)
        hits = self.index.search(q_emb, self.k)
        by_id = {r.seed_id: r for r in results}
        for seed, ents, exp, linked, a, b in plans:
            best: dict[int, float] = {}
            prov: dict[int, list[str]] = {}
            first: dict[int, int] = {}
            for qi in range(a, b):
                for pi, score in hits[qi]:
                    if pi not in best or score > best[pi]:
                        best[pi] = score
                    first.setdefault(pi, len(first))
                    src = prov.setdefault(pi, [])
                    if queries[qi] not in src:
                        src.append(queries[qi])
            top = sorted(best, key=lambda i: (-best[i], first[i]))[: self.context_size]
            ctx = self.index.passages.rows(top)
            gold = gold_matches(seed, ctx) if seed.gold_passage_ids else []
            meta: dict[str, Any] = {
                "entities": ents, "expanded": exp, "linked": linked,
                "provenance": {p.id: prov[i] for i, p in zip(top, ctx, strict=True)},
                "scores": {p.id: round(best[i], 6) for i, p in zip(top, ctx, strict=True)},
                "knowledge": self.kg.kind if (self.kg is not None and expand) else "none",
            }
            if seed.meta:
                meta["seed_meta"] = seed.meta
            if seed.gold_passage_ids:
                meta["seed_gold_titles"] = sorted({p.title for p in seed.passages
                                                   if p.id in set(seed.gold_passage_ids)})
            r = by_id[seed.id]
            r.sample = Sample(
                id=seed.id, task=seed.task, instruction=seed.instruction, input=seed.input,
                output=seed.output, answers=list(seed.answers),
                passages=[Passage(id=p.id, title=p.title, text=p.text) for p in ctx],
                gold_passage_ids=gold, meta=meta)
            r.has_gold = bool(gold) if seed.gold_passage_ids else None
        return results


# ---------------------------------------------------------------- the stage

def _error_keys(path: Path) -> set[tuple[Any, ...]]:
    keys: set[tuple[Any, ...]] = set()
    if path.exists():
        for _, obj in iter_jsonl_objects(path):
            if isinstance(obj, dict):
                keys.add(_ekey(obj))
    return keys


def _ekey(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e.get("source"), e.get("id"), e.get("field"), e.get("entity"))


def run_context_stage(cfg: Any, seeds_spec: str, corpus_specs: Sequence[str],
                      st: StageRun, progress: bool = True,
                      batch_size: int = 32, index_path: str | None = None) -> dict[str, Any]:
    """The whole stage with resume, inside ``st`` (its folder, errors and manifest).

    ``index_path``: a built index folder to search and read passages from (the corpus is not
    loaded); without it the stage keeps its own exact index of the corpus in
    ``context.index_dir`` (default ``DIR/index``), built by the same code and reused on reruns.
    """
    from tqdm.auto import tqdm

    from scarlet_ray.context.knowledge import make_knowledge
    from scarlet_ray.index.build import ensure
    from scarlet_ray.index.folder import IndexFolder, encoder_settings
    from scarlet_ray.models.encoder import load_encoder
    from scarlet_ray.models.ner import load_ner

    ctx = cfg.context
    out = st.out
    contexts_path, errors_path = out / "contexts.jsonl", st.errors.path
    timings = st.timings

    known_errors = _error_keys(errors_path)

    def record(errs: Sequence[RecordError | dict[str, Any]]) -> int:
        new = []
        for e in errs:
            d = e.as_dict() if isinstance(e, RecordError) else e
            if _ekey(d) not in known_errors:
                known_errors.add(_ekey(d))
                new.append(d)
        st.errors.add(new)
        return len(new)

    torn = repair_tail(contexts_path)
    if torn is not None:
        record([{"source": f"{contexts_path}:end", "id": None, "field": "(line)",
                 "reason": f"torn last line of an interrupted run removed ({len(torn)} chars), "
                           "its seed is redone"}])
    seeds, seed_errors = load_seeds(seeds_spec, cfg.data.passage_words)
    if cfg.data.seed_limit is not None:
        seeds = seeds[: cfg.data.seed_limit]  # the job's size knob (quickstart: 50)
    record(seed_errors)
    st.require_records(len(seeds), seeds_spec, len(seed_errors))
    done = completed_ids(contexts_path)
    dropped_before = {k[1] for k in known_errors if k[0] == "entities"}
    todo = [s for s in seeds if s.id not in done and s.id not in dropped_before]
    counts: dict[str, Any] = {"seeds": len(seeds), "seed_errors": len(seed_errors),
                              "already_done": len(done & {s.id for s in seeds}),
                              "dropped_before": len(dropped_before & {s.id for s in seeds}),
                              "todo": len(todo), "written": 0, "no_entity": 0,
                              "expand_errors": 0, "entities": 0, "expanded": 0,
                              "with_gold_seeds": 0, "context_has_gold": 0}
    kg = None
    if todo:
        t = time.perf_counter()
        index: Any = None
        encoder: Any = None
        if index_path:
            encoder = load_encoder(cfg.models.retriever)
            index = IndexFolder.open(index_path, encoder_settings(encoder, cfg.data.passage_words),
                                     asked=f"models.retriever {cfg.models.retriever!r}")
            passages: Sequence[Any] = index.passages
            counts.update(corpus_passages=len(passages), corpus_errors=0)
        else:
            passages, corpus_errors = load_corpus(corpus_specs, cfg.data.passage_words)
            record(corpus_errors)
            counts.update(corpus_passages=len(passages), corpus_errors=len(corpus_errors))
        timings["load_corpus_s"] = time.perf_counter() - t

        t = time.perf_counter()
        nlp = load_ner(cfg.models.ner)
        extractor = EntityExtractor(nlp, labels=ctx.entity_labels, exclude=ctx.entity_exclude)
        kg = make_knowledge(ctx, passages, nlp, cache_dir=ctx.cache_dir or ctx.index_dir or out,
                            progress=progress)
        timings["knowledge_s"] = time.perf_counter() - t

        t = time.perf_counter()
        if index is None:
            encoder = load_encoder(cfg.models.retriever)
            index = ensure(ctx.index_dir or out / "index", passages, encoder,
                           cfg.models.retriever, cfg.data.passage_words,
                           batch_size=ctx.encode_batch_size, progress=progress)
        counts["index_reloaded"] = index.loaded_from_disk
        counts["index"] = index.summary()
        timings["index_s"] = time.perf_counter() - t

        builder = ContextBuilder(index, encoder, extractor, kg, ctx.passages_per_entity,
                                 ctx.context_size, ctx.encode_batch_size)
        t = time.perf_counter()
        bar = tqdm(total=len(todo), desc="contexts", disable=not progress)
        for b in range(0, len(todo), batch_size):
            batch = todo[b:b + batch_size]
            results = builder.build(batch)
            errs = [e for r in results for e in r.errors]
            record(errs)  # errors first: a crash before the contexts land repeats no error line
            samples = [r.sample for r in results if r.sample is not None]
            write_jsonl(contexts_path, samples, append=True)
            for r in results:
                counts["no_entity"] += r.sample is None
                counts["expand_errors"] += sum(e["field"] == "expand" for e in r.errors)
                if r.sample is not None:
                    counts["written"] += 1
                    counts["entities"] += len(r.entities)
                    counts["expanded"] += len(r.expanded)
                    if r.has_gold is not None:
                        counts["with_gold_seeds"] += 1
                        counts["context_has_gold"] += int(r.has_gold)
            bar.update(len(batch))
        bar.close()
        timings["build_s"] = time.perf_counter() - t
    n = max(counts["written"], 1)
    counts["mean_entities"] = round(counts["entities"] / n, 3)
    counts["mean_entities_after_expansion"] = round(
        (counts["entities"] + counts["expanded"]) / n, 3)
    if kg is not None:
        counts["knowledge"] = kg.stats()
        kg.close()
    st.models.update(retriever=cfg.models.retriever, ner=cfg.models.ner)
    st.counts.update(counts)
    st.extra["inputs"] = {"seeds": seeds_spec, "corpus": list(corpus_specs),
                          "index": index_path}
    return counts
