"""Wikidata's RDF vocabulary and safe SPARQL/Turtle string literals.

The one piece of syntax shared by the context stage's query builder
(``scarlet_ray.context.sparql_graph``) and the Wikidata JSON -> Turtle converter
(``scarlet_ray.datasets.wikidata``). It lives below both so neither imports the other.
Entity strings enter queries and Turtle only through :func:`sparql_literal`; only identifiers
matching the QID/PID regexes are interpolated as IRIs.
"""

from __future__ import annotations

import re

WD = "http://www.wikidata.org/entity/"
WDT = "http://www.wikidata.org/prop/direct/"
# used with .match(); \Z, not $, which would accept a trailing newline
QID_RE = re.compile(r"Q[1-9][0-9]{0,11}\Z")
PID_RE = re.compile(r"P[1-9][0-9]{0,11}\Z")
LANG_RE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*\Z")

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
    """``qid`` if it is a Wikidata item id (safe to write as ``wd:Q...``), else ValueError."""
    if not isinstance(qid, str) or not QID_RE.match(qid):
        raise ValueError(f"not a Wikidata item id: {qid!r}")
    return qid


def check_pid(pid: str) -> str:
    """``pid`` if it is a Wikidata property id (safe to write as ``wdt:P...``), else ValueError."""
    if not isinstance(pid, str) or not PID_RE.match(pid):
        raise ValueError(f"not a Wikidata property id: {pid!r}")
    return pid
