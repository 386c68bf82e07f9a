"""Named entities of a seed (its input and ground truth): the anchors of its shared context.

SCARLet builds each shared context around the entities a seed talks about, so a seed with no
entity has nothing to anchor retrieval on: it is dropped, and the caller counts and records it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from scarlet_ray.records import Sample

# Bare numbers ("first", "two") are no retrieval anchor and have no Wikidata item; the config's
# ``context.entity_exclude`` can change this, ``context.entity_labels`` keeps only named types.
DEFAULT_EXCLUDE: tuple[str, ...] = ("ORDINAL", "CARDINAL")


def seed_texts(seed: Sample) -> list[str]:
    """The texts NER reads: the input and the ground truth (DESIGN.md section 5)."""
    return [t for t in (seed.input, seed.output) if t and t.strip()]


def _clean(text: str) -> str:
    return " ".join(text.split()).strip(" \t\"'`.,;:!?()[]{}")


class EntityExtractor:
    """spaCy NER with order-preserving, case-insensitive de-duplication."""

    def __init__(self, nlp: Any = None, model: str = "en_core_web_sm",
                 labels: Sequence[str] = (), exclude: Sequence[str] = DEFAULT_EXCLUDE,
                 batch_size: int = 64):
        if nlp is None:
            from scarlet_ray.models.ner import load_ner

            nlp = load_ner(model)
        self.nlp = nlp
        self.labels = set(labels)
        self.exclude = set(exclude)
        self.batch_size = batch_size

    def _from_docs(self, docs: Iterable[Any]) -> list[str]:
        seen: set[str] = set()
        out: list[str] = []
        for doc in docs:
            for ent in doc.ents:
                if (self.labels and ent.label_ not in self.labels) or ent.label_ in self.exclude:
                    continue
                text = _clean(ent.text)
                key = text.casefold()
                if text and key not in seen:
                    seen.add(key)
                    out.append(text)
        return out

    def extract(self, texts: Sequence[str]) -> list[str]:
        """Entities of some texts, in order of first mention."""
        return self._from_docs(self.nlp.pipe(list(texts), batch_size=self.batch_size))

    def extract_seeds(self, seeds: Sequence[Sample]) -> list[list[str]]:
        """Entities per seed; one ``nlp.pipe`` over all texts for throughput."""
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        for s in seeds:
            ts = seed_texts(s)
            spans.append((len(texts), len(texts) + len(ts)))
            texts.extend(ts)
        docs = list(self.nlp.pipe(texts, batch_size=self.batch_size))
        return [self._from_docs(docs[a:b]) for a, b in spans]
