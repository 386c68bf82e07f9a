"""KILT JSONL: ``{"id","input","output":[{"answer", "provenance":[...]}]}`` -> seeds."""

from __future__ import annotations

from typing import Any

from scarlet_ray.datasets.base import Converted, convert_each, instruction_for, iter_records, need
from scarlet_ray.records import RecordError, Sample

# KILT task names in ids/file names -> our task pool
KILT_TASKS = {"nq": "nq", "hotpotqa": "hotpotqa", "eli5": "eli5", "fever": "fever",
              "wow": "wow", "trex": "trex", "zsre": "trex", "triviaqa": "nq"}


def read_kilt(path: str, limit: int | None = None, passage_words: int | None = None,
              task: str | None = None) -> Converted:
    """KILT provenance names Wikipedia pages, not texts, so records become seeds for stage 1."""
    if task is None:
        low = str(path).lower()
        task = next((v for k, v in KILT_TASKS.items() if k in low), "nq")
    kilt_task: str = task

    def one(obj: Any, src: str) -> list[Sample]:
        outputs = need(obj, "output", src, list)
        answers = [o["answer"] for o in outputs
                   if isinstance(o, dict) and isinstance(o.get("answer"), str) and o["answer"]]
        if not answers:
            raise RecordError(src, "output", "no answer in output")
        prov = [p.get("title") for o in outputs if isinstance(o, dict)
                for p in o.get("provenance", []) or [] if isinstance(p, dict)]
        return [Sample(id=f"kilt-{need(obj, 'id', src, (str, int))}", task=kilt_task,
                       instruction=instruction_for(kilt_task), input=need(obj, "input", src, str),
                       output=answers[0], answers=answers, passages=[],
                       meta={"provenance_titles": [t for t in prov if t]})]

    return convert_each(Converted("seeds"), iter_records(path), limit, one)
