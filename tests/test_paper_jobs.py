"""The paper's experiment as jobs: every job loads, the dry run, held-out separation, one query
format for training and evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from scarlet_ray.cli import main
from scarlet_ray.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "jobs"
PAPER_TASKS = ["nq", "hotpotqa", "eli5", "fever", "wow", "trex"]
ABLATIONS = {  # job -> the settings it changes against jobs/llama3-8b.yaml
    "no-expansion": {"context.knowledge": "none"},
    "fixed-labels": {"labels.method": "fixed"},
    "gpt-4o-mini": {"synthesis.model": "gpt-4o-mini-2024-07-18",
                    "synthesis.price_per_1k_input": 0.00015,
                    "synthesis.price_per_1k_output": 0.0006},
    "fewer-masks": {"attribution.n_masks": 16},
}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_every_job_loads_and_the_paper_pairs_models():
    jobs = sorted(p for p in JOBS.rglob("*.yaml") if p.name != "runtime_env.yaml")
    assert len(jobs) >= 7
    for p in jobs:
        load_config(p)
    llama, qwen = load_config(JOBS / "llama3-8b.yaml"), load_config(JOBS / "qwen2.5-3b.yaml")
    assert (llama.models.generator, llama.models.retriever) == (
        "meta-llama/Meta-Llama-3-8B-Instruct", "BAAI/bge-base-en-v1.5")
    assert (qwen.models.generator, qwen.models.retriever) == (
        "Qwen/Qwen2.5-3B-Instruct", "facebook/contriever")
    for cfg in (llama, qwen):
        srcs = cfg.data.seed_sources()
        assert [s.task for s in srcs] == PAPER_TASKS
        assert {(s.count, s.sampling, s.seed) for s in srcs} == {(1000, "random", 42)}
        assert [e.name for e in cfg.evaluation.sets] == [
            "nq", "hotpotqa", "eli5", "fever", "wow", "trex", "zsre", "scifact",
            "climate-fever", "fiqa"]
        assert cfg.data.corpus_formats == ["kilt-wikipedia"]
        assert cfg.evaluation.corpus == ["closed", "pooled"]
        assert cfg.training.query_instruction is None  # task instruction [SEP] input
    assert qwen.data == llama.data and qwen.evaluation == llama.evaluation  # base: inherited


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_changes_only_what_it_names(name):
    base = _flat(load_config(JOBS / "llama3-8b.yaml").dump())
    abl = _flat(load_config(JOBS / "ablations" / f"{name}.yaml").dump())
    changed = {k: v for k, v in abl.items() if base.get(k) != v}
    changed.pop("name")
    changed.pop("training.storage_path")
    assert changed == ABLATIONS[name]


def test_base_chain_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "c.yaml")


def test_single_file_seeds_form_and_its_keys():
    cfg = load_config(None, ["data.seeds=x.json", "data.seed_limit=5"])
    (src,) = cfg.data.seed_sources()
    assert (src.path, src.format, src.count, src.sampling) == ("x.json", "hotpotqa", 5, "first")
    with pytest.raises(ConfigError, match="data.seed_limit belongs to the single-file form"):
        load_config(None, ["data.seeds=[{path: x.jsonl}]", "data.seed_limit=5"])


# ------------------------------------------------------------------ dry run
def test_dry_run_of_the_cluster_job_answers_in_seconds(capsys, tmp_path):
    t0 = time.perf_counter()
    rc = main(["run", "--dry-run", "--config", str(JOBS / "llama3-8b.yaml"),
               "--output", str(tmp_path / "out")])
    took = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert rc == 2 and took < 10, took
    assert not (tmp_path / "out").exists()
    seeds = out[out.index("seed mix"):out.index("seeds per task")]
    for task in PAPER_TASKS:
        row = next(x for x in seeds.splitlines() if f"{task}-train-kilt.jsonl" in x)
        assert "1,000 (random, seed 42)" in row and "absent on this machine" in row, row
    sets = out[out.index("evaluation sets"):out.index("models")]
    for name, metric in [("nq", "substring"), ("eli5", "rougeL"), ("fever", "accuracy"),
                         ("wow", "f1"), ("zsre", "substring"), ("scifact", "accuracy"),
                         ("climate-fever", "accuracy"), ("fiqa", "rougeL")]:
        assert any(x.split("│")[1].strip() == name and metric in x
                   for x in sets.splitlines() if x.count("│") > 3), name
    assert "512" in sets  # long-form generation length
    problems = out[out.index("problem(s):"):]
    assert problems.count("absent on this machine") >= 6 + 1 + 10


def _kilt(path: Path, task: str, n: int = 3, start: int = 0) -> None:
    rows = []
    for i in range(start, start + n):
        inp = {"trex": f"Subject {i} [SEP] place of birth", "zsre": f"Subject {i} [SEP] educated at",
               "wow": f"I like topic {i}.\nWhat about it?"}.get(task, f"question {task} {i}?")
        ans = {"fever": "SUPPORTS"}.get(task, f"answer {i}")
        rows.append({"id": f"{task}{i}", "input": inp, "output": [
            {"answer": ans, "provenance": [{"wikipedia_id": "1", "title": "Page"}]}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _stand_ins(root: Path) -> None:
    """Small files in each input's format at the cluster job's paths under ``root``."""
    k = root / "kilt"
    k.mkdir(parents=True)
    for t in PAPER_TASKS:
        _kilt(k / f"{t}-train-kilt.jsonl", t)
        _kilt(k / f"{t}-dev-kilt.jsonl", t, start=100)
    _kilt(k / "structured_zeroshot-dev-kilt.jsonl", "zsre", start=100)
    (k / "kilt_knowledgesource.json").write_text(json.dumps(
        {"_id": "1", "wikipedia_id": "1", "wikipedia_title": "Page",
         "text": ["Page\n", "Some text about the page.\n"]}) + "\n")
    (root / "scifact").mkdir()
    (root / "scifact" / "corpus.jsonl").write_text(json.dumps(
        {"doc_id": 1, "title": "T", "abstract": ["A sentence."], "structured": False}) + "\n")
    (root / "scifact" / "claims_dev.jsonl").write_text(json.dumps(
        {"id": 1, "claim": "A claim.", "evidence": {"1": [{"sentences": [0],
                                                          "label": "SUPPORT"}]},
         "cited_doc_ids": [1]}) + "\n")
    (root / "climate-fever").mkdir()
    (root / "climate-fever" / "climate-fever.jsonl").write_text(json.dumps(
        {"claim_id": "0", "claim": "Ice melts.", "claim_label": "SUPPORTS", "evidences": [
            {"evidence_id": "Ice:1", "evidence_label": "SUPPORTS", "article": "Ice",
             "evidence": "Ice melts when warm.", "entropy": 0.0, "votes": []}]}) + "\n")
    f = root / "beir" / "fiqa"
    (f / "qrels").mkdir(parents=True)
    (f / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "", "text": "Buy."}) + "\n")
    (f / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "Invest?"}) + "\n")
    (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")


def test_dry_run_with_the_inputs_present_exits_zero(tmp_path, capsys, monkeypatch):
    data = tmp_path / "scarlet-data"
    _stand_ins(data)
    text = (JOBS / "llama3-8b.yaml").read_text().replace("/home/ray/scarlet-data", str(data))
    job = tmp_path / "llama3-8b.yaml"
    job.write_text(text.replace("/mnt/shared/scarlet-ray/indexes", str(tmp_path / "indexes")))
    monkeypatch.setenv("OPENAI_API_KEY", "not-used-by-a-dry-run")
    argv = ["run", "--dry-run", "--config", str(job), "--output", str(tmp_path / "out")]
    assert main(argv) == 2  # the KILT index is not built yet: said before anything runs
    assert "index.path:" in capsys.readouterr().out
    # a stand-in of a built index: the dry run reads only its record
    ix = tmp_path / "indexes" / "kilt-bge-base"
    ix.mkdir(parents=True)
    (ix / "index.json").write_text(json.dumps({
        "status": "complete", "fingerprint": "f", "encoder_ref": "BAAI/bge-base-en-v1.5",
        "ann": {"kind": "ivfpq"}, "counts": {"passages": 21_015_324}}))
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out[out.find("problem"):]
    assert "no problems found" in out and "absent" not in out
    assert "fewer than count 1,000" in out  # a stand-in has 3 records: said, not an error
    assert "21,015,324" in out


def test_seeds_file_as_evaluation_set_is_refused_in_one_line(tmp_path, capsys, shared_data):
    hp = shared_data / "hotpotqa" / "hotpotqa_train.json"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "data": {"seeds": str(hp), "seed_limit": 20, "corpus": [str(hp)]},
        "evaluation": {"sets": [{"name": "held", "path": str(hp), "format": "hotpotqa"}]}}))
    args = ["--config", str(job), "--output", str(tmp_path / "run")]
    assert main(["run", "--dry-run", *args]) == 2
    out = capsys.readouterr().out
    line = ("evaluation.sets.0 (held): reads the training seeds file "
            f"{hp} without an explicit offset: it would evaluate on training questions")
    assert line in out
    # the run itself refuses the same, before writing anything
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(line) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    # an offset inside the seeds is refused too; past them it is accepted
    for offset, ok in ((10, False), (20, True)):
        job.write_text(yaml.safe_dump({
            "data": {"seeds": str(hp), "seed_limit": 20, "corpus": [str(hp)],
                     "corpus_formats": ["hotpotqa-corpus"]},
            "evaluation": {"sets": [{"name": "held", "path": str(hp), "format": "hotpotqa",
                                     "offset": offset, "sampling": "first"}]}}))
        assert (main(["run", "--dry-run", *args]) == 0) is ok
        assert ("is inside the seeds" in capsys.readouterr().out) is not ok


def test_leak_by_id_and_by_normalised_text():
    from scarlet_ray.evalsets import TrainedOn, find_leaks

    trained = TrainedOn()
    trained.add("s1", "Who wrote Dune?")
    trained.add("s2", "What is the capital of France")
    leak = find_leaks([("s1", "another text"), ("e2", "who wrote  dune"),
                       ("e3", "What is the capital of Spain?")], trained)
    assert leak.by_id == ["s1"] and leak.by_text == [("e2", "s1")]
    line = leak.line("evaluation set x", 3)
    assert line.startswith("evaluation set x: 2 of its 3 questions were trained on")
    assert not find_leaks([("e3", "What is the capital of Spain?")], trained)


@pytest.mark.slow
def test_run_refuses_a_set_holding_a_training_question_by_text(tmp_path, capsys, shared_data):
    """A set from another file that repeats a seed's question (new id, other case and
    punctuation) fails its step with one line; nothing is scored on it."""
    from scarlet_ray.datasets import convert

    hp = shared_data / "hotpotqa" / "hotpotqa_train.json"
    first = json.loads(hp.read_text())[1]
    first = {**first, "_id": "renamed", "question": first["question"].upper().rstrip("?")}
    (tmp_path / "dev.json").write_text(json.dumps([first]))
    corpus = tmp_path / "corpus.jsonl"
    qs = convert("hotpotqa", str(hp), limit=2).records
    corpus.write_text("".join(json.dumps({"id": f"c{i}", "title": p.title, "text": p.text}) + "\n"
                              for i, p in enumerate(p for s in qs for p in s.passages)))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "data": {"seeds": str(hp), "seed_limit": 3, "corpus": [str(corpus)]},
        "stages": ["evaluate"],
        "evaluation": {"train_gold": False, "sets": [
            {"name": "dev", "path": str(tmp_path / "dev.json"), "format": "hotpotqa"}]}}))
    assert main(["run", "--config", str(job), "--output", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if "│ set dev " in x)
    assert "failed" in row and "questions were trained on" in out and "renamed" in out
    assert not (tmp_path / "run" / "eval" / "dev").exists()


# ------------------------------------------------------------------ one query format
def test_training_and_evaluation_queries_come_from_one_function():
    from scarlet_ray.evaluation.rag import retrieval_queries
    from scarlet_ray.formatting import QUERY_SEP, query_text
    from scarlet_ray.records import Sample, TrainingExample
    from scarlet_ray.tasks import get_task
    from scarlet_ray.training.data import Batcher

    nq = get_task("nq")
    q = "who wrote dune"
    sample = Sample(id="s", task="nq", instruction=nq.instruction, input=q, output="Herbert")
    ex = TrainingExample(query=q, pos=["p"], neg=["n"], prompt=nq.instruction)

    def train_query(cfg):
        b = Batcher([ex], global_batch=1, group_size=2,
                    query_instruction=cfg.training.query_instruction)
        return b.micro_batches(0, 0)[0].queries[0]

    quick = load_config(JOBS / "quickstart.yaml")  # task instruction at both ends
    assert train_query(quick) == retrieval_queries([sample], quick.evaluation.query_instruction)[
        0] == query_text(nq.instruction, q) == f"{nq.instruction} {QUERY_SEP} {q}"
    paper = load_config(JOBS / "llama3-8b.yaml")  # the released split: task / retrieval
    assert train_query(paper) == f"{nq.instruction} [SEP] {q}"
    assert retrieval_queries([sample], paper.evaluation.query_instruction)[0] == \
        f"{paper.evaluation.query_instruction} [SEP] {q}"
    fixed = load_config(None, ["training.query_instruction='Find:'",
                               "evaluation.query_instruction=''"])
    assert train_query(fixed) == "Find: [SEP] who wrote dune"
    assert retrieval_queries([sample], fixed.evaluation.query_instruction)[0] == q


def test_dry_run_lists_every_problem_at_once(tmp_path, capsys, shared_data):
    """A folder where a file belongs, a file where a folder belongs, an unknown task and a
    missing corpus: all named in one dry run, not one per attempt."""
    hp = shared_data / "hotpotqa"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "data": {"seeds": [{"path": str(hp), "format": "hotpotqa"},
                           {"path": str(hp / "hotpotqa_train.json"), "format": "hotpotqa",
                            "task": "nope"}],
                 "corpus": [str(tmp_path / "missing.jsonl")]},
        "evaluation": {"sets": [{"name": "b", "path": str(shared_data / "scifact" /
                                                           "corpus.jsonl"), "format": "beir"}]}}))
    assert main(["run", "--dry-run", "--config", str(job), "--output", str(tmp_path / "o")]) == 2
    out = capsys.readouterr().out
    assert "4 problem(s):" in out
    problems = out[out.index("4 problem(s):"):]
    assert f"data.seeds.0: {hp} is a folder, and format 'hotpotqa' reads a file" in problems
    assert "data.seeds.1.task: unknown task 'nope'" in problems
    assert "missing.jsonl: absent on this machine" in problems
    assert "is a file, and format 'beir' reads a folder" in problems
