"""The folders of a ``scarlet run`` directory: one definition for the pipeline, the report and
``bench/results_table.py``, so none of them guesses where another wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# retriever variants a run evaluates, in report order
VARIANTS = ("base", "trained", "gold")


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # inputs
    @property
    def seeds(self) -> Path:
        return self.root / "seeds" / "seeds.jsonl"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus" / "corpus.jsonl"

    # stages
    @property
    def contexts(self) -> Path:
        return self.root / "context" / "contexts.jsonl"

    @property
    def synthesized(self) -> Path:
        return self.root / "synthesis" / "samples.jsonl"

    @property
    def samples(self) -> Path:
        """What attribution runs on: seed samples on their shared context + synthesized ones."""
        return self.root / "samples" / "samples.jsonl"

    @property
    def attributions(self) -> Path:
        return self.root / "attribution" / "attributions"

    @property
    def train_file(self) -> Path:
        return self.root / "labels" / "train.jsonl"

    @property
    def model_dir(self) -> Path:
        return self.root / "train" / "model"

    @property
    def gold_train_file(self) -> Path:
        return self.root / "labels_gold" / "train.jsonl"

    @property
    def gold_model_dir(self) -> Path:
        return self.root / "train_gold" / "model"

    # evaluation
    @property
    def heldout_beir(self) -> Path:
        return self.root / "heldout" / "beir"

    @property
    def heldout_samples(self) -> Path:
        return self.root / "heldout" / "samples.jsonl"

    @property
    def heldout_corpus(self) -> Path:
        return self.root / "heldout" / "corpus.jsonl"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_run(self, kind: str, variant: str) -> Path:
        """``eval/<kind>_<variant>``: kind is retrieval, rag or beir."""
        return self.eval_dir / f"{kind}_{variant}"

    @property
    def eval_attribution(self) -> Path:
        return self.eval_dir / "attribution"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def stage_dirs(self) -> list[tuple[str, list[Path]]]:
        """Report rows: a stage name and the folders whose manifests make up its time."""
        return [
            ("inputs", [self.seeds.parent, self.corpus.parent]),
            ("context", [self.contexts.parent]),
            ("synthesis", [self.synthesized.parent]),
            ("attribution", [self.samples.parent, self.attributions.parent]),
            ("labels", [self.train_file.parent, self.gold_train_file.parent]),
            ("train", [self.model_dir, self.gold_model_dir]),
            ("eval", [self.eval_attribution, self.heldout_beir.parent,
                      *(self.eval_run(k, v) for k in ("retrieval", "rag", "beir")
                        for v in VARIANTS)]),
        ]
