"""Entities that co-occur in corpus passages: the embedded, network-free knowledge graph."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scarlet_ray.context.graph import KnowledgeGraph

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
