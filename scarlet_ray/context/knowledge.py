"""Which knowledge graph the context stage expands entities through: ``context.knowledge``.

The backends live one per module (all implement :class:`~scarlet_ray.context.graph.KnowledgeGraph`):

* ``sparql`` -> :mod:`scarlet_ray.context.sparql_http` (any SPARQL endpoint over HTTP, with
  retries and the on-disk :mod:`~scarlet_ray.context.query_cache`);
* ``oxigraph`` -> :mod:`scarlet_ray.context.oxigraph_store` (in-process store from RDF files);
* ``corpus`` -> :mod:`scarlet_ray.context.corpus_graph` (co-occurrence in the corpus itself);
* ``none`` -> no expansion.

The two SPARQL backends share the queries of :mod:`scarlet_ray.context.sparql_graph`. This module
maps the config name to a builder (:data:`BACKENDS`) and re-exports the public names that callers
have always imported from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scarlet_ray.context.corpus_graph import CorpusGraph, normalize
from scarlet_ray.context.graph import KnowledgeGraph, KnowledgeGraphError
from scarlet_ray.context.oxigraph_store import OxigraphStore
from scarlet_ray.context.query_cache import QueryCache
from scarlet_ray.context.sparql_graph import (
    PREFIXES,
    SparqlGraph,
    case_variants,
    link_query,
    neighbours_query,
)
from scarlet_ray.context.sparql_http import WikidataSparql
from scarlet_ray.sparql import PID_RE, QID_RE, WD, WDT, check_pid, check_qid, sparql_literal

__all__ = [
    "BACKENDS", "PID_RE", "PREFIXES", "QID_RE", "WD", "WDT", "CorpusGraph", "KnowledgeGraph",
    "KnowledgeGraphError", "OxigraphStore", "QueryCache", "SparqlGraph", "WikidataSparql",
    "case_variants", "check_pid", "check_qid", "link_query", "make_knowledge",
    "neighbours_query", "normalize", "sparql_literal",
]

# builder(ctx, common, passages, nlp, cache_dir, progress) -> graph; ``common`` holds the
# settings every SPARQL graph takes (properties, max_related, language)
Builder = Callable[[Any, dict[str, Any], Sequence[Any] | None, Any, str | Path | None, bool],
                   KnowledgeGraph]


def _sparql(ctx: Any, common: dict[str, Any], passages: Sequence[Any] | None, nlp: Any,
            cache_dir: str | Path | None, progress: bool) -> KnowledgeGraph:
    cdir = ctx.cache_dir or cache_dir
    return WikidataSparql(ctx.endpoint, user_agent=ctx.user_agent, timeout_s=ctx.timeout_s,
                          retries=ctx.retries, backoff_s=ctx.backoff_s,
                          cache=Path(cdir) / "sparql-cache.sqlite" if cdir else None,
                          **common)


def _oxigraph(ctx: Any, common: dict[str, Any], passages: Sequence[Any] | None, nlp: Any,
              cache_dir: str | Path | None, progress: bool) -> KnowledgeGraph:
    if not ctx.rdf_files:
        raise ValueError("context.knowledge=oxigraph needs context.rdf_files (Turtle files; "
                         "see scarlet_ray.datasets.wikidata)")
    return OxigraphStore(ctx.rdf_files, **common)


def _corpus(ctx: Any, common: dict[str, Any], passages: Sequence[Any] | None, nlp: Any,
            cache_dir: str | Path | None, progress: bool) -> KnowledgeGraph:
    """The co-occurrence graph, saved beside the index so a rerun skips the NER pass."""
    if passages is None:
        raise ValueError("context.knowledge=corpus needs the corpus passages")
    use_ner = ctx.corpus_graph_ner and nlp is not None
    fp = None
    if cache_dir is not None:
        from scarlet_ray.context.index import corpus_fingerprint

        ner_id = f"{nlp.meta.get('name')}-{nlp.meta.get('version')}" if use_ner else "none"
        fp = corpus_fingerprint(passages, f"corpus-graph|ner={ner_id}")
        found = CorpusGraph.load(Path(cache_dir) / "corpus_graph.json", fp)
        if found is not None:
            found.max_related = ctx.max_related
            return found
    graph = CorpusGraph(passages, nlp=nlp if use_ner else None,
                        max_related=ctx.max_related, progress=progress)
    if fp is not None:
        graph.save(Path(cache_dir) / "corpus_graph.json", fp)  # type: ignore[arg-type]
    return graph


BACKENDS: dict[str, Builder] = {"sparql": _sparql, "oxigraph": _oxigraph, "corpus": _corpus}


def make_knowledge(ctx: Any, passages: Sequence[Any] | None = None, nlp: Any = None,
                   cache_dir: str | Path | None = None,
                   progress: bool = False) -> KnowledgeGraph | None:
    """The graph named by ``config.context.knowledge`` (None for "none")."""
    if ctx.knowledge == "none" or ctx.max_related == 0:
        return None
    try:
        build = BACKENDS[ctx.knowledge]
    except KeyError:
        raise ValueError(f"unknown context.knowledge {ctx.knowledge!r}") from None
    common = {"properties": ctx.properties, "max_related": ctx.max_related,
              "language": ctx.language}
    return build(ctx, common, passages, nlp, cache_dir, progress)
