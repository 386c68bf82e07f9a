"""Readers of public formats -> records (Samples, seeds without passages, or corpus passages).

Every reader is a generator of records; a record it cannot convert (or whose id repeats an
earlier one) is reported through the ``skipped`` list of its ``Converted`` result with its
location and reason, never dropped silently. Record files may be a JSON array or JSONL alike
(``base.iter_records``); formats that are one JSON object (hotpotqa-corpus, SQuAD) or TSV are
read as such.
"""

from __future__ import annotations

from scarlet_ray.datasets.base import Converted, FormatSpec
from scarlet_ray.datasets.beir import read_beir_corpus
from scarlet_ray.datasets.climate_fever import read_climate_fever, read_climate_fever_corpus
from scarlet_ray.datasets.dpr import read_dpr, read_dpr_tsv_corpus
from scarlet_ray.datasets.fiqa import read_fiqa
from scarlet_ray.datasets.flashrag import read_flashrag_corpus, read_flashrag_qa
from scarlet_ray.datasets.hotpotqa import read_hotpotqa, read_hotpotqa_corpus
from scarlet_ray.datasets.kilt import read_kilt
from scarlet_ray.datasets.kilt_wiki import read_kilt_wikipedia
from scarlet_ray.datasets.musique import read_musique, read_musique_corpus
from scarlet_ray.datasets.scifact import read_scifact, read_scifact_corpus
from scarlet_ray.datasets.squad import read_squad

FORMATS: dict[str, FormatSpec] = {
    "hotpotqa": FormatSpec("samples", read_hotpotqa, "HotpotQA distractor (JSON or JSONL)"),
    "hotpotqa-corpus": FormatSpec("corpus", read_hotpotqa_corpus, "{title: [sentences]} JSON"),
    "musique": FormatSpec("samples", read_musique, "MuSiQue-Ans (JSON or JSONL)"),
    "musique-corpus": FormatSpec("corpus", read_musique_corpus, "{title, text} (JSON or JSONL)"),
    "dpr": FormatSpec("samples", read_dpr, "DPR training, positive/negative ctxs (JSON or JSONL)"),
    "dpr-corpus": FormatSpec("corpus", read_dpr_tsv_corpus, "DPR psgs_w100 TSV (id, text, title)"),
    "flashrag-qa": FormatSpec("seeds", read_flashrag_qa, "FlashRAG QA (JSONL or JSON)"),
    "flashrag-corpus": FormatSpec("corpus", read_flashrag_corpus, "FlashRAG corpus (JSONL/JSON)"),
    "kilt": FormatSpec("seeds", read_kilt, "KILT input/output (JSONL or JSON)"),
    "kilt-wikipedia": FormatSpec("corpus", read_kilt_wikipedia,
                                 "KILT knowledge source pages -> 100-word passages"),
    "beir": FormatSpec("corpus", read_beir_corpus, "BEIR directory or corpus.jsonl"),
    "squad": FormatSpec("samples", read_squad, "SQuAD v1/v2 JSON"),
    "scifact": FormatSpec("samples", read_scifact, "SciFact claims JSONL (+ corpus.jsonl beside)"),
    "scifact-corpus": FormatSpec("corpus", read_scifact_corpus, "SciFact corpus.jsonl (doc_id)"),
    "climate-fever": FormatSpec("samples", read_climate_fever, "Climate-FEVER claims JSONL"),
    "climate-fever-corpus": FormatSpec("corpus", read_climate_fever_corpus,
                                       "Climate-FEVER evidence sentences"),
    "fiqa": FormatSpec("samples", read_fiqa, "FiQA-2018 BEIR folder or original task-2 TSVs"),
}

__all__ = ["FORMATS", "Converted", "FormatSpec", "convert"]


def convert(fmt: str, path: str, **kwargs) -> Converted:
    """Read ``path`` in format ``fmt`` into records."""
    try:
        spec = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}") from None
    return spec.reader(path, **kwargs)
