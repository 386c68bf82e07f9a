"""KILT task files: ``{"id","input","output":[{"answer", "provenance":[...]}]}`` -> seeds.

One reader for every KILT task; what differs per task is only how input and answers read:

- NQ, HotpotQA, TriviaQA: short answers, every answer kept as an alias, output = the first;
- ELI5: long answers, output = the first, all kept;
- FEVER: the answer is the label, which must be one of the task's labels (SUPPORTS/REFUTES);
- WoW: the input is the dialogue history, one turn a line: the turns are kept, one a line;
- T-REx, zsRE: slot filling, input ``subject [SEP] relation``; every answer is an alias.

Output entries that hold only provenance (KILT's annotation rows) add provenance but no
answer; a record with no answer at all has no ground truth and is quarantined.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from scarlet_ray.datasets.base import Converted, convert_each, iter_records, need
from scarlet_ray.records import RecordError, Sample
from scarlet_ray.tasks import Task, get_task

# KILT task names in file names -> our task pool (zsRE ships as structured_zeroshot-*-kilt.jsonl)
KILT_TASKS = {"nq": "nq", "hotpotqa": "hotpotqa", "triviaqa": "nq", "eli5": "eli5",
              "fever": "fever", "wow": "wow", "trex": "trex", "zsre": "zsre",
              "structured_zeroshot": "zsre"}
SLOT_FILLING = ("trex", "zsre")
_PROVENANCE_KEYS = ("wikipedia_id", "title", "start_paragraph_id", "end_paragraph_id")


def task_from_file_name(path: str | Path) -> str:
    """The task a KILT file name names (``nq-train-kilt.jsonl`` -> nq).

    Only the file name is read, word by word, so a folder called ``nq`` or a temporary folder
    name does not decide the task; a name naming no task or two is an error, not a guess.
    """
    name = Path(path).name.lower()
    found = {task for key, task in KILT_TASKS.items()
             if re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])", name)}
    if len(found) != 1:
        why = "names no KILT task" if not found else f"names several tasks {sorted(found)}"
        raise ValueError(f"{path}: the file name {why}; pass task= (KILT names: "
                         f"{sorted(KILT_TASKS)})")
    return found.pop()


def resolve_task(task: str) -> Task:
    """The task of the pool, or a ValueError naming the unknown name."""
    try:
        return get_task(task)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from None


def read_kilt(path: str, limit: int | None = None, passage_words: int | None = None,
              task: str | None = None, *, select: Collection[int] | None = None) -> Converted:
    """KILT provenance names Wikipedia pages, not texts, so records become seeds for stage 1.

    ``task`` overrides the task the file name names. ``meta`` keeps the provenance (titles,
    wikipedia_ids and paragraph spans) so an evaluation can match retrieved KILT passages
    (ids ``{wikipedia_id}_{i}``) by page.
    """
    spec = resolve_task(task if task is not None else task_from_file_name(path))

    def one(obj: Any, src: str) -> list[Sample]:
        rid = str(need(obj, "id", src, (str, int)))
        text = _input(need(obj, "input", src, str), spec.name, src, rid)
        answers, prov = _answers_and_provenance(need(obj, "output", src, list), spec, src, rid)
        meta: dict[str, Any] = {
            "provenance_titles": _unique(p.get("title") for p in prov),
            "provenance_wikipedia_ids": _unique(p.get("wikipedia_id") for p in prov),
            "provenance": prov,
        }
        if spec.name in SLOT_FILLING:
            subject, _, relation = text.partition("[SEP]")
            meta.update(subject=subject.strip(), relation=relation.strip())
        return [Sample(id=f"kilt-{rid}", task=spec.name, instruction=spec.instruction,
                       input=text, output=answers[0], answers=answers, passages=[], meta=meta)]

    return convert_each(Converted("seeds"), iter_records(path, "questions", select=select),
                        limit, one)


def _input(text: str, task: str, src: str, rid: str) -> str:
    """The input as the prompt shows it: WoW turns one a line (blank ones dropped), slot
    filling checked for its ``[SEP]``."""
    if task == "wow":
        text = "\n".join(t.strip() for t in text.split("\n") if t.strip())
    if not text.strip():
        raise RecordError(src, "input", "empty input", rid)
    if task in SLOT_FILLING:
        subject, sep, relation = text.partition("[SEP]")
        if not (sep and subject.strip() and relation.strip()):
            raise RecordError(src, "input", "expected 'subject [SEP] relation'", rid)
    return text


def _answers_and_provenance(outputs: list, spec: Task, src: str,
                            rid: str) -> tuple[list[str], list[dict[str, Any]]]:
    answers: list[str] = []
    prov: list[dict[str, Any]] = []
    for i, out in enumerate(outputs):
        if not isinstance(out, dict):
            raise RecordError(src, f"output.{i}", "expected an object with answer and/or "
                              f"provenance, got {type(out).__name__}", rid)
        answer = out.get("answer")
        if answer is not None:
            if not isinstance(answer, str):
                raise RecordError(src, f"output.{i}.answer",
                                  f"expected a string, got {type(answer).__name__}", rid)
            if spec.labels and answer.strip() not in spec.labels:
                raise RecordError(src, f"output.{i}.answer", f"label {answer!r} is not one of "
                                  f"{list(spec.labels)}", rid)
            if answer.strip():
                answers.append(answer.strip())
        provenance = out.get("provenance") or []
        if not isinstance(provenance, list):
            raise RecordError(src, f"output.{i}.provenance",
                              f"expected a list, got {type(provenance).__name__}", rid)
        prov += [{k: p[k] for k in _PROVENANCE_KEYS if k in p}
                 for p in provenance if isinstance(p, dict)]
    if not answers:
        raise RecordError(src, "output", "no answer in output", rid)
    return list(dict.fromkeys(answers)), prov


def _unique(values: Any) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v not in (None, "")))
