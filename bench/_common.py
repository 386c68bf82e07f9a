"""What the benches share: where the data and results are, the run environment, JSON output.

Benches run as scripts (``python bench/NAME.py``, as the README, docs and Makefile say), so this
folder is ``sys.path[0]`` and ``import _common`` needs no path edit; ``scarlet_ray`` comes from
the editable install. Importing this module sets the environment defaults every bench wants
(before any bench starts Ray or a tokenizer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

for _k, _v in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
               ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_k, _v)


def shared_data_dir() -> Path:
    """$SCARLET_SHARED_DATA, else ``../shared/data`` beside the checkout (as tests/conftest.py)."""
    env = os.environ.get("SCARLET_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def train_file(dataset: str) -> Path:
    """A shared ``DATASET/DATASET_train.json`` (hotpotqa, musique)."""
    return shared_data_dir() / dataset / f"{dataset}_train.json"


def hotpotqa_train() -> Path:
    """The shared HotpotQA train file most benches draw their questions from."""
    return train_file("hotpotqa")


def gold_samples(shared: Path) -> list[Any]:
    """HotpotQA + MuSiQue train samples that name gold passages (training benches)."""
    from scarlet_ray.datasets import convert
    from scarlet_ray.records import Sample

    out: list[Sample] = []
    for fmt, path in (("hotpotqa", shared / "hotpotqa" / "hotpotqa_train.json"),
                      ("musique", shared / "musique" / "musique_train.json")):
        res = convert(fmt, str(path))
        out.extend(r for r in res.records if isinstance(r, Sample) and r.gold_passage_ids)
    return out


def write_json(path: str | Path, obj: Any, **kwargs: Any) -> Path:
    """Write a result file (indented JSON), making its folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=2, **kwargs))
    return p
