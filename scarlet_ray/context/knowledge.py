"""Knowledge graphs that expand a seed's entities with their one-hop neighbours.

SCARLet adds each entity's Wikidata neighbours (P31, P361, ... up to ``max_related``) as
"label: description" retrieval queries, so a shared context covers more than the seed's own
topic. Three graphs share one interface:

* ``WikidataSparql``: any SPARQL endpoint over HTTP via SPARQLWrapper (Wikidata's WDQS, or a
  local Oxigraph server), with retries, backoff and an on-disk query cache;
* ``OxigraphStore``: the same queries against an in-process ``pyoxigraph`` store loaded from RDF
  files (no network);
* ``CorpusGraph``: entities that co-occur in the corpus passages themselves (no RDF at all).

Queries use only standard SPARQL 1.1 over ``rdfs:label`` / ``schema:description`` with a language
filter (no ``SERVICE wikibase:label``), so Wikidata and Oxigraph answer them alike. Entity strings
enter queries only through :func:`sparql_literal`; only identifiers matching the QID/PID regexes
are interpolated as IRIs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
import time
import unicodedata
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WD = "http://www.wikidata.org/entity/"
WDT = "http://www.wikidata.org/prop/direct/"
PREFIXES = (
    f"PREFIX wd: <{WD}>\n"
    f"PREFIX wdt: <{WDT}>\n"
    "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\n"
    "PREFIX schema: <http://schema.org/>\n"
)
# used with .match(); \Z, not $, which would accept a trailing newline
QID_RE = re.compile(r"Q[1-9][0-9]{0,11}\Z")
PID_RE = re.compile(r"P[1-9][0-9]{0,11}\Z")
LANG_RE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*\Z")
MAX_LABEL_CHARS = 250  # Wikidata's label length limit: longer strings cannot be labels


class KnowledgeGraphError(RuntimeError):
    """The graph could not answer (endpoint down, timeouts, retries exhausted)."""


# ---------------------------------------------------------------- safe query building

_ECHAR = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
          "\b": "\\b", "\f": "\\f"}


def sparql_literal(value: str, lang: str | None = None) -> str:
    """``value`` as a SPARQL (and Turtle) double-quoted string literal.

    Every character the grammar forbids raw (quote, backslash, CR, LF) and the other ECHARs are
    escaped (a single quote needs none inside double quotes, and some parsers reject ``\\'``).
    A ``u``/``U`` right after a backslash is written as its 8-digit ``\\UXXXXXXXX`` code point
    (following hex digits cannot extend it), so an engine that pre-processes code-point escapes
    over the whole query text (SPARQL 1.1 section 19.2, e.g. rdflib) reads the same string as
    one that does not (Oxigraph). Lone surrogates become U+FFFD.
    """
    if lang is not None and not LANG_RE.match(lang):
        raise ValueError(f"invalid language tag {lang!r}")
    value = value.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(value) else value
    out: list[str] = []
    prev_backslash = False
    for ch in value:
        if prev_backslash and ch in "uU":
            out.append(f"\\U{ord(ch):08X}")
        else:
            out.append(_ECHAR.get(ch, ch))
        prev_backslash = ch == "\\"
    lit = '"' + "".join(out) + '"'
    return f"{lit}@{lang}" if lang else lit


def _has_surrogates(s: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in s)


def check_qid(qid: str) -> str:
    if not isinstance(qid, str) or not QID_RE.match(qid):
        raise ValueError(f"not a Wikidata item id: {qid!r}")
    return qid


def check_pid(pid: str) -> str:
    if not isinstance(pid, str) or not PID_RE.match(pid):
        raise ValueError(f"not a Wikidata property id: {pid!r}")
    return pid


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


# ---------------------------------------------------------------- the interface

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
        return {"kind": self.kind}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


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


# ---------------------------------------------------------------- HTTP endpoint

class QueryCache:
    """SQLite cache of SPARQL results keyed by endpoint + query text, shared across runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, "
                         "endpoint TEXT, query TEXT, result TEXT, at REAL)")
        self._db.commit()

    @staticmethod
    def key(endpoint: str, query: str) -> str:
        return hashlib.sha256(f"{endpoint}\n{query}".encode()).hexdigest()

    def get(self, endpoint: str, query: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM results WHERE key = ?",
                                   (self.key(endpoint, query),)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, endpoint: str, query: str, result: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                             (self.key(endpoint, query), endpoint, query, json.dumps(result),
                              time.time()))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or getattr(exc, "hdrs", None)
    if headers is None:
        return None
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(retriable?, short reason) for an exception raised by SPARQLWrapper / urllib."""
    import socket
    import urllib.error

    from SPARQLWrapper.SPARQLExceptions import EndPointInternalError, SPARQLWrapperException

    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500, f"HTTP {exc.code}"
    if isinstance(exc, EndPointInternalError):
        return True, "HTTP 500 (endpoint internal error)"
    if isinstance(exc, SPARQLWrapperException):
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return True, "timed out"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return True, "timed out"
        return True, f"connection failed: {reason}"
    if isinstance(exc, (ConnectionError, OSError)):
        return True, f"connection failed: {exc}"
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return True, "malformed response"
    return False, f"{type(exc).__name__}: {exc}"


class WikidataSparql(SparqlGraph):
    """Wikidata (or any SPARQL 1.1 endpoint holding wd:/wdt: data) over HTTP via SPARQLWrapper."""

    kind = "sparql"

    def __init__(self, endpoint: str = "https://query.wikidata.org/sparql", *,
                 user_agent: str = "scarlet-ray/0.1", timeout_s: float = 30.0, retries: int = 4,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 cache: QueryCache | str | Path | None = None, max_consecutive_failures: int = 5,
                 method: str = "GET", **kwargs: Any):
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.cache = QueryCache(cache) if isinstance(cache, (str, Path)) else cache
        self.max_consecutive_failures = max_consecutive_failures
        self.method = method
        self.sent = 0          # HTTP requests sent (tries included)
        self.cache_hits = 0
        self.failures = 0      # queries that failed after all retries
        self._consecutive = 0

    def _send(self, query: str) -> Any:
        from SPARQLWrapper import GET, JSON, POST, SPARQLWrapper

        sw = SPARQLWrapper(self.endpoint, agent=self.user_agent)
        sw.setQuery(query)
        sw.setReturnFormat(JSON)
        sw.setMethod(POST if self.method.upper() == "POST" else GET)
        sw.setTimeout(max(1, math.ceil(self.timeout_s)))
        self.sent += 1
        result = sw.query().convert()
        if not isinstance(result, dict) or "results" not in result:
            raise json.JSONDecodeError("not SPARQL JSON results", str(result)[:50], 0)
        return result

    def select(self, query: str) -> list[dict[str, str]]:
        result = self.cache.get(self.endpoint, query) if self.cache else None
        if result is not None:
            self.cache_hits += 1
        else:
            result = self._query_with_retries(query)
            if self.cache:
                self.cache.put(self.endpoint, query, result)
        return [{k: v.get("value", "") for k, v in b.items()}
                for b in result.get("results", {}).get("bindings", [])]

    def _query_with_retries(self, query: str) -> Any:
        if self.max_consecutive_failures and self._consecutive >= self.max_consecutive_failures:
            raise KnowledgeGraphError(
                f"SPARQL endpoint {self.endpoint}: skipped, {self._consecutive} queries in a "
                "row failed")
        reason = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                result = self._send(query)
                self._consecutive = 0
                return result
            except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
                retriable, reason = _classify(exc)
                if not retriable:
                    self.failures += 1
                    raise KnowledgeGraphError(
                        f"SPARQL endpoint {self.endpoint}: {reason}") from exc
                if attempt == self.retries:
                    break
                wait = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
                hinted = _retry_after(exc)
                if hinted is not None:
                    wait = min(self.max_backoff_s, max(wait, hinted))
                log.warning("SPARQL %s: %s; retry %d/%d in %.1fs", self.endpoint, reason,
                            attempt + 1, self.retries, wait)
                time.sleep(wait)
        self.failures += 1
        self._consecutive += 1
        raise KnowledgeGraphError(
            f"SPARQL endpoint {self.endpoint}: {reason} after {self.retries + 1} attempts")

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": self.endpoint, "requests_sent": self.sent,
                "cache_hits": self.cache_hits, "failed_queries": self.failures}

    def close(self) -> None:
        if self.cache:
            self.cache.close()


# ---------------------------------------------------------------- in-process RDF store

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


# ---------------------------------------------------------------- corpus co-occurrence graph

CORPUS_NER_LABELS = ("PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "PRODUCT", "EVENT",
                     "WORK_OF_ART", "LAW", "LANGUAGE")
_TOKEN_RE = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-, accent- and punctuation-insensitive key of an entity string."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_TOKEN_RE.findall(text.casefold()))


def _strip_parenthetical(title: str) -> str:
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()


def _first_words(text: str, n: int) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    words = sentence.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")


class CorpusGraph(KnowledgeGraph):
    """Entities that co-occur in corpus passages: the embedded, network-free expansion.

    Nodes are passage titles (a Wikipedia title is the corpus' own entity, and its first sentence
    plays Wikidata's description) plus, when an NLP pipeline is given, the named entities spaCy
    finds in the passages. Two nodes are neighbours when they occur in the same passage; they are
    ranked by co-occurrence count weighted by inverse passage frequency, so ubiquitous nodes
    ("American") do not crowd out specific ones.
    """

    kind = "corpus"

    def __init__(self, passages: Sequence[Any], nlp: Any = None, max_related: int = 5,
                 description_words: int = 25, max_ngram: int = 8,
                 ner_labels: Sequence[str] = CORPUS_NER_LABELS, batch_size: int = 64,
                 progress: bool = False):
        self.max_related = max_related
        self.label: dict[str, str] = {}
        self.description: dict[str, str] = {}
        alias: dict[str, str] = {}
        for p in passages:
            if not p.title:
                continue
            key = normalize(p.title)
            if not key:
                continue
            if key not in self.label:
                self.label[key] = p.title
                self.description[key] = _first_words(p.text, description_words)
            short = normalize(_strip_parenthetical(p.title))
            if short and short != key:
                alias.setdefault(short, key)
        self.alias = alias
        title_keys = set(self.label) | set(alias)
        longest = max((len(k.split()) for k in title_keys), default=1)
        max_ngram = min(max_ngram, longest)
        ents_per_passage: list[list[str]] = [[] for _ in passages]
        if nlp is not None:
            from tqdm.auto import tqdm

            texts = [p.text for p in passages]
            docs = nlp.pipe(texts, batch_size=batch_size)
            for i, doc in enumerate(tqdm(docs, total=len(texts), desc="corpus graph NER",
                                         disable=not progress)):
                for ent in doc.ents:
                    if ent.label_ in ner_labels:
                        ents_per_passage[i].append(" ".join(ent.text.split()))
        self.nodes_in: list[set[str]] = []
        self.passages_of: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(passages):
            nodes: set[str] = set()
            if p.title and normalize(p.title):
                nodes.add(normalize(p.title))
            toks = normalize(p.text).split()
            for n in range(1, max_ngram + 1):
                for j in range(len(toks) - n + 1):
                    g = " ".join(toks[j:j + n])
                    if g in self.label:
                        nodes.add(g)
                    elif g in alias:
                        nodes.add(alias[g])
            for e in ents_per_passage[i]:
                k = normalize(e)
                if not k:
                    continue
                k = alias.get(k, k)
                self.label.setdefault(k, e)
                nodes.add(k)
            self.nodes_in.append(nodes)
            for k in nodes:
                self.passages_of[k].append(i)
        self.n_passages = max(1, len(passages))

    def link(self, label: str) -> str | None:
        k = normalize(label)
        if not k:
            return None
        k = k if k in self.passages_of else self.alias.get(k, k)
        return k if k in self.passages_of else None

    def neighbours(self, node: str) -> list[str]:
        if self.max_related <= 0 or node not in self.passages_of:
            return []
        counts: Counter[str] = Counter()
        for i in self.passages_of[node]:
            counts.update(k for k in self.nodes_in[i] if k != node)
        scored = sorted(
            ((c * math.log(1 + self.n_passages / len(self.passages_of[k])), k)
             for k, c in counts.items()),
            key=lambda x: (-x[0], x[1]))
        out = []
        for _, k in scored[: self.max_related]:
            d = self.description.get(k)
            out.append(f"{self.label[k]}: {d}" if d else self.label[k])
        return out

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "nodes": len(self.passages_of),
                "title_nodes": len(self.description)}

    _FIELDS = ("max_related", "label", "description", "alias", "passages_of", "n_passages")

    def save(self, path: str | Path, fingerprint: str) -> None:
        """Write the graph (JSON, atomically) so a rerun skips the NER pass over the corpus."""
        import os

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = {k: getattr(self, k) for k in self._FIELDS}
        data["nodes_in"] = [sorted(n) for n in self.nodes_in]
        data["fingerprint"] = fingerprint
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | Path, fingerprint: str) -> CorpusGraph | None:
        """The saved graph if it was built from the same corpus and settings, else None."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            return None
        g = cls.__new__(cls)
        for k in cls._FIELDS:
            setattr(g, k, data[k])
        g.passages_of = defaultdict(list, data["passages_of"])
        g.nodes_in = [set(n) for n in data["nodes_in"]]
        return g


def make_knowledge(ctx: Any, passages: Sequence[Any] | None = None, nlp: Any = None,
                   cache_dir: str | Path | None = None,
                   progress: bool = False) -> KnowledgeGraph | None:
    """The graph named by ``config.context.knowledge`` (None for "none")."""
    common = {"properties": ctx.properties, "max_related": ctx.max_related,
              "language": ctx.language}
    if ctx.knowledge == "none" or ctx.max_related == 0:
        return None
    if ctx.knowledge == "sparql":
        cdir = ctx.cache_dir or cache_dir
        return WikidataSparql(ctx.endpoint, user_agent=ctx.user_agent, timeout_s=ctx.timeout_s,
                              retries=ctx.retries, backoff_s=ctx.backoff_s,
                              cache=Path(cdir) / "sparql-cache.sqlite" if cdir else None,
                              **common)
    if ctx.knowledge == "oxigraph":
        if not ctx.rdf_files:
            raise ValueError("context.knowledge=oxigraph needs context.rdf_files (Turtle files; "
                             "see scarlet_ray.datasets.wikidata)")
        return OxigraphStore(ctx.rdf_files, **common)
    if ctx.knowledge == "corpus":
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
            graph.save(Path(cache_dir) / "corpus_graph.json", fp)
        return graph
    raise ValueError(f"unknown context.knowledge {ctx.knowledge!r}")
