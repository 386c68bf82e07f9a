"""The generator prompt of DESIGN.md section 5, shared by attribution, synthesis and RAG."""

from __future__ import annotations

from collections.abc import Sequence

from scarlet_ray.records import Passage

SYSTEM_PROMPT = "You are a helpful AI assistant."


def render_passages(passages: Sequence[Passage]) -> str:
    return "\n\n".join(p.render() for p in passages)


def user_message(instruction: str, passages: Sequence[Passage], input_text: str) -> str:
    """``{instruction}\\n\\nPassages:\\n{passages}\\n\\nInput: {input}``; no passages, no block."""
    if passages:
        return f"{instruction}\n\nPassages:\n{render_passages(passages)}\n\nInput: {input_text}"
    return f"{instruction}\n\nInput: {input_text}"


def chat_messages(instruction: str, passages: Sequence[Passage], input_text: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(instruction, passages, input_text)},
    ]
