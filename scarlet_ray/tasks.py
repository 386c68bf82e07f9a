"""The task pool: each task's instruction (to the generator and the retriever) and its metric.

A task is a domain definition used by every layer (dataset readers give samples their task's
instruction; synthesis, RAG evaluation and metrics read it), so it lives at the bottom of the
package. User-defined tasks from a job file and the selection for a synthesis run are in
``scarlet_ray.synthesis.tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Metric = Literal["substring", "rougeL", "f1", "accuracy"]


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    instruction: str
    example_input: str
    example_output: str
    metric: Metric
    # Cheap rule checks on a synthesized output: ``labels`` is the closed set an output must come
    # from (FEVER); ``extractive`` means the answer must occur in the context (NQ, T-REx ...).
    labels: tuple[str, ...] = field(default=())
    extractive: bool = False
    # greedy generation length at RAG evaluation: short answers stop early (EOS), long-form
    # answers (ELI5, FiQA) get the paper's 512 new tokens
    max_new_tokens: int = 32
    # synthesis writes samples of this task (the paper's six); evaluation-only tasks do not
    synthesize: bool = True


BUILTIN_TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("nq", "single-hop factoid question answering (Natural Questions style)",
             "Answer the question with a short phrase, using the passages.",
             "who wrote the novel the hitchhiker's guide to the galaxy", "Douglas Adams",
             "substring", extractive=True),
        Task("hotpotqa", "multi-hop question answering that needs two passages (HotpotQA style)",
             "Answer the multi-hop question with a short phrase, combining facts from the passages.",
             "Which band formed first, the one that released 'OK Computer' or 'Parklife'?",
             "Radiohead", "substring", extractive=True),
        Task("eli5", "long-form explanatory answer (ELI5 style)",
             "Explain the answer to the question in a few sentences, using the passages.",
             "Why is the sky blue?",
             "Sunlight is scattered by air molecules, and blue light is scattered the most ...",
             "rougeL", max_new_tokens=512),
        Task("fever", "fact verification (FEVER style): SUPPORTS or REFUTES",
             "Verify the claim using the passages. Answer SUPPORTS or REFUTES.",
             "Douglas Adams was born in Cambridge.", "SUPPORTS", "accuracy",
             labels=("SUPPORTS", "REFUTES")),
        Task("wow", "knowledge-grounded dialogue (Wizard of Wikipedia style)",
             "Continue the conversation with an informative reply grounded in the passages.",
             "User: I love science fiction comedies.",
             "Then you might like The Hitchhiker's Guide to the Galaxy by Douglas Adams.", "f1",
             max_new_tokens=128),
        Task("trex", "slot filling (T-REx style): subject [SEP] relation -> object",
             "Fill in the object of the relation for the subject, using the passages.",
             "Douglas Adams [SEP] place of birth", "Cambridge", "substring", extractive=True),
        # evaluation-only tasks of the paper's Table 2 (KILT zsRE; BEIR SciFact, Climate-FEVER,
        # FiQA): read from their public files, never synthesized
        Task("zsre", "slot filling (zsRE style): subject [SEP] relation -> object",
             "Fill in the object of the relation for the subject, using the passages.",
             "Douglas Adams [SEP] educated at", "St John's College", "substring",
             extractive=True, synthesize=False),
        Task("scifact", "scientific claim verification (SciFact): SUPPORTS or REFUTES",
             "Verify the scientific claim using the passages. Answer SUPPORTS or REFUTES.",
             "Vitamin D deficiency is unrelated to birth weight.", "REFUTES", "accuracy",
             labels=("SUPPORTS", "REFUTES"), synthesize=False),
        Task("climate-fever", "climate claim verification (Climate-FEVER): SUPPORTS or REFUTES",
             "Verify the claim about climate using the passages. Answer SUPPORTS or REFUTES.",
             "Global warming is driving polar bears toward extinction.", "SUPPORTS", "accuracy",
             labels=("SUPPORTS", "REFUTES"), synthesize=False),
        Task("fiqa", "financial opinion question answering (FiQA): a long-form answer",
             "Answer the financial question in a few sentences, using the passages.",
             "Is it better to pay off a mortgage early or invest?",
             "It depends on the mortgage rate compared with the expected return ...", "rougeL",
             max_new_tokens=512, synthesize=False),
    ]
}


def get_task(name: str, extra: dict[str, Task] | None = None) -> Task:
    """Look a task up in the built-in pool or the user's extra tasks."""
    pool = {**BUILTIN_TASKS, **(extra or {})}
    try:
        return pool[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(pool)}") from None
