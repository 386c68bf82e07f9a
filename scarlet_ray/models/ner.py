"""spaCy pipeline loading: the offline default by its short name, or any installed model."""

from __future__ import annotations

from typing import Any

from scarlet_ray.models.registry import named, require_package


def load_ner(ref: str = "en_core_web_sm") -> Any:
    import spacy

    m = named(ref)
    if m is not None:
        require_package(m)
        return spacy.load(m.import_name)
    return spacy.load(ref)
