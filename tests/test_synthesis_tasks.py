"""Task pool: built-ins, user tasks from YAML, selection errors that name the key."""

from __future__ import annotations

import pytest

from scarlet_ray.config import ConfigError, load_config
from scarlet_ray.synthesis.tasks import BUILTIN_TASKS, selected_tasks, task_pool

YAML = """
synthesis:
  tasks: [fever, legal]
  extra_tasks:
    - name: legal
      description: statute question answering
      instruction: Answer the legal question citing the passages.
      example_input: Which act governs X?
      example_output: The X Act
      metric: rougeL
      labels: []
      extractive: true
"""


def test_yaml_extra_task_is_selected(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text(YAML)
    cfg = load_config(p)
    tasks = selected_tasks(cfg.synthesis)
    assert [t.name for t in tasks] == ["fever", "legal"]
    legal = tasks[1]
    assert legal.instruction == "Answer the legal question citing the passages."
    assert legal.metric == "rougeL" and legal.extractive
    assert tasks[0].labels == ("SUPPORTS", "REFUTES")


def test_unknown_and_duplicate_tasks_are_errors(tmp_path):
    cfg = load_config(None, ["synthesis.tasks=[nq, nope]"])
    with pytest.raises(ValueError, match=r"synthesis.tasks: unknown task\(s\) \['nope'\]"):
        selected_tasks(cfg.synthesis)
    cfg = load_config(None, ["synthesis.tasks=[nq, nq]"])
    with pytest.raises(ValueError, match="duplicates"):
        selected_tasks(cfg.synthesis)
    p = tmp_path / "job.yaml"
    p.write_text(YAML.replace("name: legal", "name: nq"))
    with pytest.raises(ValueError, match=r"extra_tasks.0.name: 'nq' is a built-in task"):
        task_pool(load_config(p).synthesis.extra_tasks)


def test_task_spec_typo_fails_at_load(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text(YAML.replace("metric: rougeL", "metrik: rougeL"))
    with pytest.raises(ConfigError, match="extra_tasks.0.metrik: unknown key"):
        load_config(p)


def test_builtin_pool_matches_paper_task_set():
    assert {k for k, t in BUILTIN_TASKS.items() if t.synthesize} == {
        "nq", "hotpotqa", "eli5", "fever", "wow", "trex"}
    assert {k for k, t in BUILTIN_TASKS.items() if not t.synthesize} == {
        "zsre", "scifact", "climate-fever", "fiqa"}
    assert {t.name for t in BUILTIN_TASKS.values() if t.extractive} == {
        "nq", "hotpotqa", "trex", "zsre"}
