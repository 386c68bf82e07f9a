"""The same SPARQL against an in-process pyoxigraph store loaded from RDF files (no network)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scarlet_ray.context.sparql_graph import SparqlGraph


class OxigraphStore(SparqlGraph):
    """The same SPARQL against an in-process pyoxigraph store loaded from RDF files."""

    kind = "oxigraph"

    def __init__(self, rdf_files: Iterable[str | Path] = (), **kwargs: Any):
        super().__init__(**kwargs)
        import pyoxigraph

        self.store = pyoxigraph.Store()
        for f in rdf_files:
            self.load(f)

    def load(self, path: str | Path | None, data: str | None = None) -> None:
        """Load an RDF file (format from its extension), Wikidata JSON (``.json``/``.json.gz``,
        converted to Turtle), or Turtle text given as ``data``."""
        import pyoxigraph

        if data is not None:
            self.store.load(data.encode(), format=pyoxigraph.RdfFormat.TURTLE)
            return
        if path is None:
            raise ValueError("nothing to load: give a path or data")
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(str(p))
        if p.name.endswith((".json", ".json.gz")):
            from scarlet_ray.datasets.wikidata import to_turtle

            self.load(None, data=to_turtle([p], languages=[self.language]))
            return
        fmt = pyoxigraph.RdfFormat.from_extension(p.suffix.lstrip(".") or "ttl")
        if fmt is None:
            raise ValueError(f"{p}: unknown RDF format (use .ttl, .nt, .rdf ...)")
        self.store.load(path=str(p), format=fmt)

    def __len__(self) -> int:
        return len(self.store)

    def select(self, query: str) -> list[dict[str, str]]:
        solutions = self.store.query(query)
        names = [v.value for v in solutions.variables]
        rows = []
        for sol in solutions:
            row = {}
            for n in names:
                term = sol[n]
                if term is not None:
                    row[n] = term.value
            rows.append(row)
        return rows

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "triples": len(self.store)}
