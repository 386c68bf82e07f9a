"""The folders of a ``scarlet run`` directory: one definition for the pipeline, the report and
``bench/results_table.py``, so none of them guesses where another wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# retriever variants a run evaluates, in report order
VARIANTS = ("base", "trained", "gold")


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        from scarlet_ray.stagedir import refuse_object_store

        # `scarlet run` (and its --dry-run) build the layout before any stage opens a folder:
        # refuse s3://... here too, before the run dir becomes a local folder named "s3:"
        refuse_object_store(self.root)
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

    # evaluation sets (prepared by the pipeline: samples, closed corpus, BEIR folder from gold)
    @property
    def eval_sets_dir(self) -> Path:
        return self.root / "eval_sets"

    def eval_set_dir(self, name: str) -> Path:
        return self.eval_sets_dir / name

    def eval_set_samples(self, name: str) -> Path:
        return self.eval_set_dir(name) / "samples.jsonl"

    def eval_set_corpus(self, name: str) -> Path:
        return self.eval_set_dir(name) / "corpus.jsonl"

    def set_corpus(self, es: Any) -> Path:
        """The corpus an evaluation set retrieves from (closed corpus)."""
        return self.corpus if es.run_corpus else self.eval_set_corpus(es.name)

    def eval_set_beir(self, name: str) -> Path:
        return self.eval_set_dir(name) / "beir"

    @property
    def pooled_corpus(self) -> Path:
        """Every set's corpus in one (set names cannot start with "_")."""
        return self.eval_sets_dir / "_pooled" / "corpus.jsonl"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_run(self, kind: str, variant: str, set_name: str | None = None) -> Path:
        """``eval/<set>/<kind>_<variant>``: kind is retrieval, rag (closed corpus) or rag-pooled;
        ``eval/beir_<variant>`` for ``evaluation.beir``."""
        base = self.eval_dir / set_name if set_name else self.eval_dir
        return base / f"{kind}_{variant}"

    def eval_set_names(self) -> list[str]:
        """Sets with evaluation runs on disk, in name order."""
        if not self.eval_dir.is_dir():
            return []
        return sorted(d.name for d in self.eval_dir.iterdir()
                      if d.is_dir() and d.name != "attribution" and "_" not in d.name[:1]
                      and any(d.glob("*_*/manifest.json")))

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
            ("eval", [self.eval_attribution,
                      *(sorted(d for d in self.eval_sets_dir.iterdir() if d.is_dir())
                        if self.eval_sets_dir.is_dir() else []),
                      *(self.eval_run("beir", v) for v in VARIANTS),
                      *(d for n in self.eval_set_names()
                        for d in sorted((self.eval_dir / n).iterdir()) if d.is_dir())]),
        ]
