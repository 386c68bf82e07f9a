"""Linking and one-hop expansion through standard SPARQL 1.1 SELECTs over Wikidata-shaped data.

Queries use only ``rdfs:label`` / ``schema:description`` with a language filter (no
``SERVICE wikibase:label``), so Wikidata's WDQS, an Oxigraph server and an in-process store
answer them alike; subclasses only say how a query is run (:meth:`SparqlGraph.select`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from scarlet_ray.context.graph import KnowledgeGraph
from scarlet_ray.sparql import LANG_RE, QID_RE, WD, WDT, check_pid, check_qid, sparql_literal

PREFIXES = (
    f"PREFIX wd: <{WD}>\n"
    f"PREFIX wdt: <{WDT}>\n"
    "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\n"
    "PREFIX schema: <http://schema.org/>\n"
)
MAX_LABEL_CHARS = 250  # Wikidata's label length limit: longer strings cannot be labels


def case_variants(label: str) -> list[str]:
    """The case forms labels take (lower, Capitalised, Title Case, UPPER, as given)."""
    forms = [label, label.lower(), label[:1].upper() + label[1:], label.title(), label.upper(),
             label[:1].upper() + label[1:].lower(), label[:1].lower() + label[1:]]
    out: list[str] = []
    for f in forms:
        if f and f not in out:
            out.append(f)
    return out


def link_query(labels: Sequence[str], lang: str = "en", limit: int = 50) -> str:
    """Items whose label in ``lang`` is one of ``labels`` (an indexed lookup on Wikidata)."""
    values = " ".join(sparql_literal(x, lang) for x in labels)
    return (PREFIXES + "SELECT DISTINCT ?item WHERE {\n"
            f"  VALUES ?label {{ {values} }}\n"
            "  ?item rdfs:label ?label .\n"
            f"}}\nLIMIT {int(limit)}\n")


def neighbours_query(qid: str, pids: Sequence[str], lang: str = "en", limit: int = 200) -> str:
    """One hop from ``qid`` over ``pids``, with each neighbour's label and description."""
    check_qid(qid)
    if not pids:
        raise ValueError("no properties to expand over")
    props = " ".join(f"wdt:{check_pid(p)}" for p in pids)
    lang_lit = sparql_literal(lang if LANG_RE.match(lang) else "en")
    return (PREFIXES + "SELECT ?p ?n ?label ?desc WHERE {\n"
            f"  VALUES ?p {{ {props} }}\n"
            f"  wd:{qid} ?p ?n .\n"
            "  ?n rdfs:label ?label .\n"
            f"  FILTER(LANG(?label) = {lang_lit})\n"
            "  OPTIONAL { ?n schema:description ?desc .\n"
            f"             FILTER(LANG(?desc) = {lang_lit}) }}\n"
            f"}}\nLIMIT {int(limit)}\n")


def _qid_of(iri: str) -> str | None:
    if iri.startswith(WD):
        q = iri[len(WD):]
        if QID_RE.match(q):
            return q
    return None


def _qnum(q: str) -> int:
    return int(q[1:])


class SparqlGraph(KnowledgeGraph):
    """Linking and expansion through SPARQL SELECTs; subclasses say how a query is run."""

    def __init__(self, properties: Sequence[str] = ("P31", "P361", "P112", "P910", "P527", "P2670"),
                 max_related: int = 5, language: str = "en"):
        self.properties = [check_pid(p) for p in properties]
        self.max_related = max_related
        if not LANG_RE.match(language):
            raise ValueError(f"invalid language tag {language!r}")
        self.language = language

    @abstractmethod
    def select(self, query: str) -> list[dict[str, str]]:
        """Run a SELECT; rows map variable -> lexical value (IRI or literal text)."""

    def link(self, label: str) -> str | None:
        label = " ".join(label.split())
        if not label or len(label) > MAX_LABEL_CHARS:
            return None
        for labels in ([label], case_variants(label)[1:]):
            if not labels:
                continue
            rows = self.select(link_query(labels, self.language))
            qids = [q for q in (_qid_of(r.get("item", "")) for r in rows) if q]
            if qids:
                return min(qids, key=_qnum)  # the oldest item: usually the main sense
        return None

    def neighbours(self, node: str) -> list[str]:
        if self.max_related <= 0 or not self.properties:
            return []
        rows = self.select(neighbours_query(node, self.properties, self.language))
        order = {p: i for i, p in enumerate(self.properties)}
        found: list[tuple[int, int, str, str]] = []
        for r in rows:
            pid = r.get("p", "").removeprefix(WDT)
            q = _qid_of(r.get("n", ""))
            label = r.get("label", "").strip()
            if q is None or pid not in order or not label or q == node:
                continue
            found.append((order[pid], _qnum(q), label, r.get("desc", "").strip()))
        out: list[str] = []
        seen: set[str] = set()
        for _, _, label, desc in sorted(found):
            text = f"{label}: {desc}" if desc else label
            if text.casefold() not in seen:
                seen.add(text.casefold())
                out.append(text)
            if len(out) >= self.max_related:
                break
        return out
