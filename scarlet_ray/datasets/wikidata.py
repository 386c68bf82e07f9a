"""Wikidata JSON (``wbgetentities`` API answers, JSON dumps) -> Turtle for SPARQL stores.

The Turtle holds exactly what the context stage asks a Wikidata endpoint: ``rdfs:label`` and
``schema:description`` per language, and truthy ``wdt:`` statements between entities (preferred
rank if a property has one, else normal; deprecated never), as WDQS's own RDF mapping does. A
local Oxigraph server or in-process store loaded with it answers the same queries as WDQS.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from scarlet_ray.records import RecordError
from scarlet_ray.sparql import PID_RE, QID_RE, WD, WDT, sparql_literal

TURTLE_PREFIXES = (
    f"@prefix wd: <{WD}> .\n"
    f"@prefix wdt: <{WDT}> .\n"
    "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
    "@prefix schema: <http://schema.org/> .\n\n"
)
_ENTITY_RE = (QID_RE, PID_RE)


def _valid_id(x: Any) -> bool:
    return isinstance(x, str) and any(r.match(x) for r in _ENTITY_RE)


def iter_entities(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(source, entity JSON) from a wbgetentities answer or a JSON dump (array, one per line,
    optionally gzipped)."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as fh:
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{p}:{exc.lineno}", "(file)", f"invalid JSON: {exc.msg}") from None
        if not isinstance(data.get("entities"), dict):
            raise RecordError(str(p), "entities", "expected a wbgetentities answer")
        for k, e in data["entities"].items():
            yield f"{p}:entities.{k}", e
        return
    # dump: "[\n{...},\n{...}\n]" one entity per line
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip().rstrip(",")
        if line in ("", "[", "]"):
            continue
        try:
            yield f"{p}:{lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{p}:{lineno}", "(line)", f"invalid JSON: {exc.msg}") from None


def _truthy_targets(statements: list[dict[str, Any]]) -> list[str]:
    ranks = [s.get("rank", "normal") for s in statements]
    best = "preferred" if "preferred" in ranks else "normal"
    out = []
    for s in statements:
        if s.get("rank", "normal") != best:
            continue
        snak = s.get("mainsnak", {})
        dv = snak.get("datavalue", {})
        if snak.get("snaktype") != "value" or dv.get("type") != "wikibase-entityid":
            continue
        v = dv.get("value", {})
        target = v.get("id")
        if target is None and "numeric-id" in v:
            prefix = "P" if v.get("entity-type") == "property" else "Q"
            target = f"{prefix}{v['numeric-id']}"
        if _valid_id(target):
            out.append(target)
    return out


def entity_triples(entity: dict[str, Any], languages: Sequence[str] | None = ("en",)
                   ) -> Iterator[str]:
    """Turtle statements for one entity; missing entities (``"missing": ""``) give none."""
    eid = entity.get("id")
    if not _valid_id(eid) or "missing" in entity:
        return
    for field, pred in (("labels", "rdfs:label"), ("descriptions", "schema:description")):
        for lang, v in sorted((entity.get(field) or {}).items()):
            if languages is not None and lang not in languages:
                continue
            value = v.get("value") if isinstance(v, dict) else None
            if isinstance(value, str) and value:
                try:
                    lit = sparql_literal(value, lang)
                except ValueError:  # a language code that is no BCP-47 tag
                    continue
                yield f"wd:{eid} {pred} {lit} ."
    for pid, statements in sorted((entity.get("claims") or {}).items()):
        if not PID_RE.match(pid) or not isinstance(statements, list):
            continue
        for target in _truthy_targets(statements):
            yield f"wd:{eid} wdt:{pid} wd:{target} ."


def to_turtle(paths: Iterable[str | Path], languages: Sequence[str] | None = ("en",)) -> str:
    """Turtle text for all entities in the given files (first occurrence of an id wins)."""
    lines = [TURTLE_PREFIXES]
    seen: set[str] = set()
    for path in paths:
        for _, entity in iter_entities(path):
            eid = entity.get("id")
            if eid in seen or "missing" in entity:
                continue
            seen.add(eid)
            lines.extend(t + "\n" for t in entity_triples(entity, languages))
    return "".join(lines)


def shared_wikidata_files(data_dir: str | Path) -> list[Path]:
    """The real Wikidata JSON files of the shared data folder."""
    d = Path(data_dir)
    return sorted(d.glob("wbgetentities-*.json")) + sorted(d.glob("sample-dump-*.json.gz"))
