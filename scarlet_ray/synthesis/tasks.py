"""The task pool: each task's instruction (to the generator and the retriever) and its metric.

Instructions follow the paper's task set (NQ, HotpotQA, ELI5, FEVER, WoW, T-REx styles). Users add
tasks through ``synthesis.extra_tasks`` in a job file and pick the ones to run with
``synthesis.tasks``::

    synthesis:
      tasks: [nq, fever, legal]
      extra_tasks:
        - name: legal
          description: statute question answering
          instruction: Answer the legal question, citing the passages.
          example_input: Which act governs data protection in the UK?
          example_output: the Data Protection Act 2018
          metric: substring        # substring | rougeL | f1 | accuracy
          extractive: true         # rule check: the answer must occur in the context
          labels: []               # rule check: closed label set (e.g. [SUPPORTS, REFUTES])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from scarlet_ray.config import SynthesisConfig, TaskSpec

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
             "rougeL"),
        Task("fever", "fact verification (FEVER style): SUPPORTS or REFUTES",
             "Verify the claim using the passages. Answer SUPPORTS or REFUTES.",
             "Douglas Adams was born in Cambridge.", "SUPPORTS", "accuracy",
             labels=("SUPPORTS", "REFUTES")),
        Task("wow", "knowledge-grounded dialogue (Wizard of Wikipedia style)",
             "Continue the conversation with an informative reply grounded in the passages.",
             "User: I love science fiction comedies.",
             "Then you might like The Hitchhiker's Guide to the Galaxy by Douglas Adams.", "f1"),
        Task("trex", "slot filling (T-REx style): subject [SEP] relation -> object",
             "Fill in the object of the relation for the subject, using the passages.",
             "Douglas Adams [SEP] place of birth", "Cambridge", "substring", extractive=True),
    ]
}


def get_task(name: str, extra: dict[str, Task] | None = None) -> Task:
    """Look a task up in the built-in pool or the user's extra tasks."""
    pool = {**BUILTIN_TASKS, **(extra or {})}
    try:
        return pool[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(pool)}") from None


def task_from_spec(spec: TaskSpec) -> Task:
    """A YAML ``synthesis.extra_tasks`` entry as a Task."""
    return Task(spec.name, spec.description, spec.instruction, spec.example_input,
                spec.example_output, spec.metric, labels=tuple(spec.labels),
                extractive=spec.extractive)


def task_pool(extra_tasks: Sequence[TaskSpec] = ()) -> dict[str, Task]:
    """Built-in tasks plus the user's; a name defined twice is an error, not a silent override."""
    pool = dict(BUILTIN_TASKS)
    for i, spec in enumerate(extra_tasks):
        if spec.name in pool:
            where = "a built-in task" if spec.name in BUILTIN_TASKS else "defined twice"
            raise ValueError(f"synthesis.extra_tasks.{i}.name: {spec.name!r} is {where}; "
                             "choose another name")
        pool[spec.name] = task_from_spec(spec)
    return pool


def selected_tasks(cfg: SynthesisConfig) -> list[Task]:
    """The tasks named by ``synthesis.tasks``, in that order, from the full pool."""
    pool = task_pool(cfg.extra_tasks)
    if not cfg.tasks:
        raise ValueError("synthesis.tasks: empty; name at least one task")
    unknown = [t for t in cfg.tasks if t not in pool]
    if unknown:
        raise ValueError(f"synthesis.tasks: unknown task(s) {unknown}; known: {sorted(pool)}")
    if len(set(cfg.tasks)) != len(cfg.tasks):
        raise ValueError(f"synthesis.tasks: duplicates in {cfg.tasks}")
    return [pool[t] for t in cfg.tasks]
