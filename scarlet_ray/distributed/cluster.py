"""Reach a Ray cluster: the one in ``RAY_ADDRESS`` / ``ray.address``, else a local one.

Two cases matter and differ:

* Inside ``ray job submit`` (or with ``RAY_ADDRESS`` set) the driver joins the existing cluster;
  the job's runtime_env (working_dir, env_vars) already reaches every worker.
* On a laptop nothing is running: a local cluster is started with the CPUs the config allows and
  no dashboard (it costs ~1 s and ~100 MB and nothing here needs it). Its workers inherit the
  driver's environment, so the checkout that is running is put on ``PYTHONPATH`` first; otherwise
  a worker could import another installed copy of ``scarlet_ray``.

Ray 2.60 turns token authentication on for a fresh local cluster unless ``RAY_AUTH_MODE`` says
otherwise (DESIGN.md section 4). Whatever the environment says is respected and passed on to the
workers unchanged; ``RAY_AUTH_TOKEN`` (if set) is used by Ray itself and never logged here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from scarlet_ray.config import RayConfig

log = logging.getLogger(__name__)

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])

# Environment a worker needs to behave like the driver (offline hubs, cache of converted models).
FORWARDED_ENV = ("SCARLET_CACHE", "SCARLET_SHARED_DATA", "HF_HOME", "HF_HUB_OFFLINE",
                 "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "RAY_AUTH_MODE")


@dataclass
class ClusterInfo:
    """What the driver connected to; goes into the manifest."""

    address: str
    started_here: bool
    resources: dict[str, float]
    auth_mode: str

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "started_here": self.started_here,
                "resources": self.resources, "auth_mode": self.auth_mode}


def target_address(cfg: RayConfig) -> str | None:
    """``RAY_ADDRESS`` wins over the config (that is how ``ray job submit`` points drivers)."""
    return os.environ.get("RAY_ADDRESS") or cfg.address or None


def _prepend_pythonpath(path: str) -> None:
    cur = os.environ.get("PYTHONPATH", "")
    parts = [p for p in cur.split(os.pathsep) if p]
    if not parts or parts[0] != path:
        os.environ["PYTHONPATH"] = os.pathsep.join([path] + [p for p in parts if p != path])


def connect(cfg: RayConfig) -> ClusterInfo:
    """Join the configured cluster or start a local one; idempotent within a process."""
    address = target_address(cfg)
    started = False
    if not ray.is_initialized():
        if address:
            log.info("joining Ray cluster at %s", address)
            ray.init(address=address, runtime_env=driver_runtime_env())
        else:
            _prepend_pythonpath(PACKAGE_PARENT)  # local workers inherit this environment
            kwargs: dict[str, Any] = {"include_dashboard": False}
            if cfg.num_cpus is not None:
                kwargs["num_cpus"] = cfg.num_cpus
            if cfg.object_store_memory is not None:
                kwargs["object_store_memory"] = cfg.object_store_memory
            log.info("starting a local Ray cluster (%s)", kwargs)
            ray.init(**kwargs)
            started = True
    ctx = ray.get_runtime_context()
    addr = address or getattr(ctx, "gcs_address", None) or "local"
    return ClusterInfo(address=str(addr), started_here=started,
                       resources={k: float(v) for k, v in ray.cluster_resources().items()
                                  if not k.startswith("node:")},
                       auth_mode=os.environ.get("RAY_AUTH_MODE", "ray-default"))


def shutdown(info: ClusterInfo) -> None:
    """Stop the cluster only if this process started it (never a shared one)."""
    if info.started_here and ray.is_initialized():
        ray.shutdown()


def in_submitted_job() -> bool:
    """True inside ``ray job submit``: the job's runtime_env already ships code and env."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def driver_runtime_env() -> dict[str, Any] | None:
    """What a driver outside a submitted job must ship to an existing cluster's workers.

    Those workers did not inherit this process's environment, so the ``scarlet_ray`` package
    this driver runs goes along as a py_module and the settings of ``FORWARDED_ENV`` as
    env_vars. Inside a submitted job the job's own runtime_env already does this (and Ray
    refuses a driver runtime_env that repeats its fields), so nothing is added there.
    """
    if in_submitted_job():
        return None
    env: dict[str, Any] = {"py_modules": [str(Path(PACKAGE_PARENT) / "scarlet_ray")],
                           "excludes": ["__pycache__", "*.pyc"]}
    wenv = worker_env()
    if wenv:
        env["env_vars"] = wenv
    return env


def worker_env() -> dict[str, str]:
    """The driver's settings a worker must share (no secrets: none of these hold one)."""
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


