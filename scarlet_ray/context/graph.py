"""The knowledge-graph interface the context stage expands seed entities through.

SCARLet adds each entity's one-hop neighbours (Wikidata P31, P361, ... up to ``max_related``) as
"label: description" retrieval queries, so a shared context covers more than the seed's own
topic. Every backend (SPARQL over HTTP, in-process Oxigraph, corpus co-occurrence) implements
this one interface; ``scarlet_ray.context.knowledge.make_knowledge`` picks one from the config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class KnowledgeGraphError(RuntimeError):
    """The graph could not answer (endpoint down, timeouts, retries exhausted)."""


class KnowledgeGraph(ABC):
    """Entity linking plus one-hop neighbours as "label: description" strings."""

    kind = "abstract"

    @abstractmethod
    def link(self, label: str) -> str | None:
        """The node id (a QID for Wikidata) of an entity string, or None."""

    @abstractmethod
    def neighbours(self, node: str) -> list[str]:
        """Up to ``max_related`` neighbours of a node, each "label: description"."""

    def expand(self, entity: str) -> list[str]:
        node = self.link(entity)
        return self.neighbours(node) if node is not None else []

    def stats(self) -> dict[str, Any]:
        """Counters for the manifest (requests, cache hits, graph size ...)."""
        return {"kind": self.kind}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
