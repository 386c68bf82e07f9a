"""The tasks of a synthesis run: the built-in pool (``scarlet_ray.tasks``) plus the user's tasks.

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
from typing import TYPE_CHECKING

from scarlet_ray.tasks import BUILTIN_TASKS, Metric, Task, get_task

if TYPE_CHECKING:
    from scarlet_ray.config import SynthesisConfig, TaskSpec

__all__ = ["BUILTIN_TASKS", "Metric", "Task", "get_task", "selected_tasks", "task_from_spec",
           "task_pool"]


def task_from_spec(spec: TaskSpec) -> Task:
    """A YAML ``synthesis.extra_tasks`` entry as a Task."""
    return Task(spec.name, spec.description, spec.instruction, spec.example_input,
                spec.example_output, spec.metric, labels=tuple(spec.labels),
                extractive=spec.extractive, max_new_tokens=spec.max_new_tokens)


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
    eval_only = [t for t in cfg.tasks if not pool[t].synthesize]
    if eval_only:
        raise ValueError(f"synthesis.tasks: {eval_only} are evaluation-only tasks (read from "
                         "their public sets, not synthesized)")
    if len(set(cfg.tasks)) != len(cfg.tasks):
        raise ValueError(f"synthesis.tasks: duplicates in {cfg.tasks}")
    return [pool[t] for t in cfg.tasks]
