"""Prompts of stage 2 and their strict parsers: synthesis, the [YES]/[NO] check, noise passages.

The synthesizer must answer with one JSON object and nothing else; anything else is rejected with
a reason instead of being repaired by guesswork, so a bad generation never becomes a bad sample.
Backends are also handed the object's JSON schema (``sample_schema``, ``noise_schema``) to
constrain decoding; the parsers stay exactly as strict, since a grammar guarantees neither a
finished object (max_tokens cuts it) nor non-empty, correct or faithful fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from scarlet_ray.prompt import render_passages
from scarlet_ray.records import Passage
from scarlet_ray.synthesis.tasks import Task

PROMPT_VERSION = "synthesis-v1"

SYNTH_SYSTEM = ("You are a careful data writer. You create training examples for a task, grounded "
                "only in the passages you are given.")
CHECK_SYSTEM = ("You are a strict reviewer of training examples. You judge whether an example is "
                "correct and supported by the passages.")
NOISE_SYSTEM = ("You write distractor passages: on the same topic as a question, plausible, but "
                "without the information needed to answer it.")


class ParseError(ValueError):
    """An LLM output did not follow the required format; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _strict_object(title: str, properties: dict[str, dict]) -> dict:
    """An object schema in the subset OpenAI's strict mode takes (and xgrammar/vLLM too): every
    property required, nothing else allowed, no length or pattern keywords."""
    return {"title": title, "type": "object", "properties": properties,
            "required": list(properties), "additionalProperties": False}


def sample_schema(task: Task) -> dict:
    """The JSON schema of a synthesized sample: string ``input`` and ``output``; a task with
    ``labels`` (FEVER-style) gets ``output`` as an enum of exactly those labels."""
    output: dict = {"type": "string"}
    if task.labels:
        output["enum"] = list(task.labels)
    return _strict_object("sample", {"input": {"type": "string"}, "output": output})


def noise_schema() -> dict:
    """The JSON schema of a noise passage: string ``title`` and ``text``."""
    return _strict_object("noise_passage", {"title": {"type": "string"},
                                            "text": {"type": "string"}})


def check_schema() -> dict:
    """The check's answer as a JSON object ``{"verdict": "[YES]" | "[NO]"}``: ``parse_check``
    reads it as it reads the bare answer (the bracketed word is in the text)."""
    return _strict_object("check_verdict", {"verdict": {"type": "string",
                                                        "enum": ["[YES]", "[NO]"]}})


def _task_rules(task: Task) -> str:
    rules = []
    if task.labels:
        rules.append(f'- "output" must be exactly one of: {", ".join(task.labels)}.')
    if task.extractive:
        rules.append('- "output" must be a short span copied verbatim from the passages.')
    return "\n".join(rules)


def synthesis_messages(task: Task, passages: Sequence[Passage]) -> list[dict]:
    """One call per (context, task): write an input and its ground-truth output."""
    example = json.dumps({"input": task.example_input, "output": task.example_output},
                         ensure_ascii=False)
    extra = _task_rules(task)
    user = (
        f"Task: {task.name} - {task.description}\n"
        f"Instruction the model will get: {task.instruction}\n"
        f"Example (its topic is unrelated to the passages): {example}\n\n"
        f"Passages:\n{render_passages(passages)}\n\n"
        "Write ONE new example of this task about the passages above.\n"
        "Requirements:\n"
        '- Correctness: "output" is the right answer to "input".\n'
        '- Faithfulness: everything needed for "output" is stated in the passages; '
        "use no outside knowledge.\n"
        "- Quality: the input is natural, specific and unambiguous; the output is well formed.\n"
        + (extra + "\n" if extra else "")
        + 'Reply with exactly one JSON object {"input": "...", "output": "..."} and nothing else.'
    )
    return [{"role": "system", "content": SYNTH_SYSTEM}, {"role": "user", "content": user}]


_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """json.loads keeps the last of repeated keys; a strict parser refuses them."""
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ParseError("malformed:duplicate_key", f"{dup}")
    return dict(pairs)


def parse_synthesis(text: str) -> tuple[str, str]:
    """Strict: one JSON object with exactly the string keys input and output (a ```json fence
    around it is allowed, nothing else)."""
    s = (text or "").strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    if not s:
        raise ParseError("malformed:empty")
    try:
        obj = json.loads(s, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ParseError("malformed:not_json", f"{exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise ParseError("malformed:not_object", type(obj).__name__)
    if set(obj) != {"input", "output"}:
        raise ParseError("malformed:keys", f"got {sorted(obj)}")
    inp, out = obj["input"], obj["output"]
    if not isinstance(inp, str) or not isinstance(out, str):
        raise ParseError("malformed:types", "input and output must be strings")
    if not inp.strip() or not out.strip():
        raise ParseError("malformed:empty_field")
    return inp.strip(), out.strip()


def check_messages(task: Task, passages: Sequence[Passage], input_text: str,
                   output_text: str) -> list[dict]:
    """The second pass: is the pair correct, faithful to the passages and well formed?"""
    user = (
        f"Task: {task.name} - {task.description}\n"
        f"Instruction: {task.instruction}\n\n"
        f"Passages:\n{render_passages(passages)}\n\n"
        f"Input: {input_text}\nOutput: {output_text}\n\n"
        "Is the output a correct answer to the input, supported by the passages, and a good "
        "example of the task? Reply with exactly [YES] or [NO]."
    )
    return [{"role": "system", "content": CHECK_SYSTEM}, {"role": "user", "content": user}]


def parse_check(text: str) -> bool:
    """[YES] -> True, [NO] -> False; both, neither or anything odd is a ParseError."""
    s = (text or "").upper()
    yes, no = "[YES]" in s, "[NO]" in s
    if yes == no:
        raise ParseError("check:unparseable", (text or "")[:80])
    return yes


def noise_messages(passages: Sequence[Passage], input_text: str, output_text: str) -> list[dict]:
    """A "relevant but useless" passage (the paper's noise): on topic, no answer."""
    user = (
        f"Question: {input_text}\nAnswer (must NOT appear or be inferable): {output_text}\n\n"
        f"Passages for style and topic:\n{render_passages(passages[:3])}\n\n"
        "Write one encyclopedia-style passage (60-100 words) about the question's topic that "
        "does not contain or imply the answer.\n"
        'Reply with exactly one JSON object {"title": "...", "text": "..."} and nothing else.'
    )
    return [{"role": "system", "content": NOISE_SYSTEM}, {"role": "user", "content": user}]


def parse_noise(text: str) -> tuple[str, str]:
    s = (text or "").strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    try:
        obj = json.loads(s, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ParseError("noise:not_json", exc.msg) from None
    if not isinstance(obj, dict) or set(obj) != {"title", "text"}:
        raise ParseError("noise:keys")
    title, body = obj["title"], obj["text"]
    if not isinstance(title, str) or not isinstance(body, str) or not body.strip():
        raise ParseError("noise:empty_field")
    return title.strip(), body.strip()
