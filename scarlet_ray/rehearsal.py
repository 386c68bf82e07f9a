"""Rehearse the autoscaling cluster flow of ``cluster.yaml`` on one machine.

``ray up cluster.yaml`` needs AWS; this starts the same *shape* of cluster locally with Ray's
fake multi-node provider: a CPU head (GCS, dashboard, autoscaler, job drivers) and worker node
types that the real autoscaler launches from zero when tasks or actors ask for their resources
and terminates after they idle. Each fake node is a real raylet (plus its agents and workers)
with the resources its type declares, so ``ray job submit``, resource-based placement,
idle scale-down and node loss behave as on the cluster. No GPU is needed: the GPU worker type
*declares* ``GPU: 1`` and ``accelerator_type:L40S: 1`` like ``gpu-l40s`` in ``cluster.yaml``;
the head declares neither, so generator actors (``num_gpus_per_actor >= 1`` or an
``accelerator_type``) can only run on workers, which is what forces the scale-up.

Why not ``ray.cluster_utils.AutoscalingCluster`` or ``ray up``: the former runs
``ray stop --force`` (kills every Ray cluster of the machine) and both read defaults from the
provider's ``example.yaml``, which the Ray 2.60 wheel does not ship. The v1 autoscaler reads the
YAML as written (no defaults filled in), so the full config is written here.

Isolation from other Ray clusters on the machine: non-default ports, an own ``--temp-dir``, and
the head is started in a new session (process group); everything this cluster runs, fake nodes
included (the autoscaler's monitor process starts them as its children), stays in that group, so
``stop()`` ends exactly this cluster and never calls ``ray stop``.

Laptop use (docs/cluster.md, "Rehearse the cluster on a laptop")::

    export RAY_AUTH_MODE=disabled              # the head runs without Ray's token auth
    python -m scarlet_ray.rehearsal up        # prints the job address, e.g. http://127.0.0.1:8275
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- python my_job.py
    python -m scarlet_ray.rehearsal status    # nodes, their type, resources and memory
    python -m scarlet_ray.rehearsal kill-node <NODE_ID>   # a spot preemption
    python -m scarlet_ray.rehearsal down
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

# The fake provider's deterministic ids: the head is ...00000, workers count up from ...00001.
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
# The provider tags its own head with this type name; the config must use it for the head.
HEAD_TYPE = "ray.head.default"
NODE_ID_ENV = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
NODE_TYPE_ENV = "RAY_NODE_TYPE_NAME"
STATE_FILE = "rehearsal.json"
MB = 1024 * 1024


# Loaded by every Python process of the cluster (PYTHONPATH), acts only in the autoscaler's
# monitor, which runs the fake provider: each fake node gets a runtime_env folder of its own.
# By default they all share the head's session folder, and Ray's working_dir plugin re-extracts
# a job's working_dir (rmtree + unzip) on every node that first uses it: a node launched mid-job
# (a replacement after a preemption) wiped the code from under the other nodes' workers ("No
# module named ...", FileNotFoundError at import). On a real cluster each node has its own disk.
SITECUSTOMIZE = """\
def _scarlet_rehearsal_hook():
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = f.read().split(b"\\0")
    except OSError:
        return
    if not any(a.endswith(b"monitor.py") and b"autoscaler" in a for a in argv):
        return
    import ray._private.parameter as parameter

    init = parameter.RayParams.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        node_id = (self.env_vars or {}).get("RAY_OVERRIDE_NODE_ID_FOR_TESTING")
        if node_id:
            self.runtime_env_dir_name = "runtime_resources_" + node_id[-5:]

    parameter.RayParams.__init__ = __init__


_scarlet_rehearsal_hook()
"""


def default_temp_dir() -> Path:
    """Short (Ray's unix sockets live under it and paths are limited to 107 bytes) and per user."""
    return Path("/tmp") / f"scarlet-rehearsal-{getpass.getuser()}"


@dataclass
class WorkerType:
    """One autoscaled node type: the resources the autoscaler plans with and the raylet gets."""

    resources: dict[str, float]
    max_workers: int
    min_workers: int = 0
    object_store_mb: int = 256


def default_worker_types(gpu_workers: int = 3, cpu_workers: int = 1) -> dict[str, WorkerType]:
    """``cluster.yaml``'s ``gpu-l40s`` and ``cpu-worker``, shrunk to fit 2 cores / a few GiB.

    The GPU type keeps its resource *names* (``GPU``, ``accelerator_type:L40S``) so the
    project's requests place the same way; counts are small because each fake node shares the
    host's cores. The other GPU types are left out: with identical shapes the autoscaler's
    choice between them would be arbitrary, and one type exercises the same flow.
    """
    types = {"gpu-l40s": WorkerType({"CPU": 1, "GPU": 1, "accelerator_type:L40S": 1},
                                    max_workers=gpu_workers)}
    if cpu_workers:
        types["cpu-worker"] = WorkerType({"CPU": 2}, max_workers=cpu_workers)
    return types


def free_port() -> int:
    """A port nobody listens on now (for the ports whose Ray defaults other clusters use)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


@dataclass
class Ports:
    """Every fixed port of the head, off Ray's defaults so other clusters on the host are safe.

    Fake worker nodes bind random ports (the provider asks for 0), so only the head's matter.
    """

    gcs: int = 6391
    dashboard: int = 8275
    client_server: int = 10011
    min_worker: int = 24100
    max_worker: int = 24199
    # Ray's defaults are fixed (52365, 44217) and would collide with another cluster's.
    dashboard_agent_listen: int = field(default_factory=free_port)
    autoscaler_metrics: int = field(default_factory=free_port)


@dataclass
class NodeInfo:
    """A node as Ray sees it, plus what the rehearsal knows about its processes."""

    node_id: str
    node_type: str
    alive: bool
    is_head: bool
    resources: dict[str, float]
    pids: list[int]
    rss_mb: float


@dataclass
class LocalAutoscalingCluster:
    """A fake multi-node autoscaling Ray cluster whose head is started and stopped by us.

    ``start()`` writes the autoscaling config, starts the head with ``RAY_FAKE_CLUSTER=1`` and
    waits for the job API; ``stop()`` ends this cluster's processes only. The state goes to
    ``<temp_dir>/rehearsal.json`` so another process (the CLI's ``down``) can find the cluster.
    """

    temp_dir: Path = field(default_factory=default_temp_dir)
    ports: Ports = field(default_factory=Ports)
    head_cpus: int = 2
    head_object_store_mb: int = 256
    worker_types: dict[str, WorkerType] = field(default_factory=default_worker_types)
    idle_timeout_minutes: float = 0.1
    # The autoscaler's loop period and how long a node may miss reports before it is
    # terminated (defaults 5 s / 30 s): short, so a rehearsal of a preemption takes seconds.
    update_interval_s: int = 1
    heartbeat_timeout_s: int = 8
    # GCS health checks of raylets: Ray's defaults (3 s x 5, a killed node is marked dead after
    # ~15 s), so a preemption looks as long to the job as on a real cluster. Shorter checks
    # (1 s x 3) hid a real failure: a batch's finite task retries all fail while the node is
    # "temporarily unavailable", and 3 retries lasted through 3 s but not through 15 s.
    health_check_period_ms: int = 3000
    health_check_failure_threshold: int = 5
    node_ip: str = ""
    pgid: int | None = None
    started_at: float | None = None

    @property
    def gcs_address(self) -> str:
        return f"{self.node_ip}:{self.ports.gcs}"

    @property
    def dashboard_url(self) -> str:
        """The job API address (what ``ray job submit --address`` takes)."""
        return f"http://127.0.0.1:{self.ports.dashboard}"

    @property
    def config_path(self) -> Path:
        return self.temp_dir / "autoscaling.yaml"

    # -- config ----------------------------------------------------------------------------

    def autoscaling_config(self) -> dict[str, Any]:
        """The full v1 autoscaler config: nothing is filled in from defaults, so every key the
        autoscaler reads is here (the keys of Ray's fake_multi_node/example.yaml)."""
        node_types: dict[str, Any] = {
            HEAD_TYPE: {"resources": {"CPU": self.head_cpus, "GPU": 0},
                        "node_config": {}, "min_workers": 0, "max_workers": 0},
        }
        for name, wt in self.worker_types.items():
            res = {k: v for k, v in wt.resources.items()}
            # Popped by the provider into the raylet's --object-store-memory (bytes).
            res["object_store_memory"] = wt.object_store_mb * MB
            node_types[name] = {"resources": res, "node_config": {},
                                "min_workers": wt.min_workers, "max_workers": wt.max_workers}
        return {
            "cluster_name": "scarlet-rehearsal",
            "max_workers": sum(wt.max_workers for wt in self.worker_types.values()),
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": self.idle_timeout_minutes,
            "provider": {
                "type": "fake_multinode",
                # Fake nodes join this GCS (the provider's default is <ip>:6379: another
                # cluster's port on a shared machine).
                "gcs_address": self.gcs_address,
                # All fake nodes share one IP; the autoscaler keys its load metrics by node id.
                "use_node_id_as_ip": True,
                # Launch `count` nodes per request (the default launches one whatever the count).
                "launch_multiple": True,
                # No SSH/setup: the provider starts raylets directly.
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
            },
            "available_node_types": node_types,
            "head_node_type": HEAD_TYPE,
            "auth": {},
            "docker": {},
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }

    def write_config(self) -> Path:
        """Write the config and check it against Ray's cluster schema."""
        from ray.autoscaler._private.util import validate_config

        cfg = self.autoscaling_config()
        validate_config(cfg)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return self.config_path

    # -- lifecycle -------------------------------------------------------------------------

    def head_command(self) -> list[str]:
        p = self.ports
        system_config = {"health_check_period_ms": self.health_check_period_ms,
                         "health_check_timeout_ms": self.health_check_period_ms,
                         "health_check_failure_threshold": self.health_check_failure_threshold}
        return [
            ray_cli(), "start", "--head",
            f"--autoscaling-config={self.config_path}",
            f"--temp-dir={self.temp_dir}",
            f"--port={p.gcs}", f"--dashboard-port={p.dashboard}", "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={p.client_server}",
            f"--min-worker-port={p.min_worker}", f"--max-worker-port={p.max_worker}",
            f"--dashboard-agent-listen-port={p.dashboard_agent_listen}",
            f"--num-cpus={self.head_cpus}", "--num-gpus=0",
            f"--object-store-memory={self.head_object_store_mb * MB}",
            f"--system-config={json.dumps(system_config, separators=(',', ':'))}",
            "--include-dashboard=true", "--disable-usage-stats",
        ]

    def head_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "RAY_FAKE_CLUSTER": "1",  # the provider refuses to run without it
            "AUTOSCALER_UPDATE_INTERVAL_S": str(self.update_interval_s),
            "AUTOSCALER_HEARTBEAT_TIMEOUT_S": str(self.heartbeat_timeout_s),
            "AUTOSCALER_METRIC_PORT": str(self.ports.autoscaler_metrics),
        })
        for k, v in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
                     ("TOKENIZERS_PARALLELISM", "false")):
            env.setdefault(k, v)
        # Job entrypoints (`-- python x.py`) run in the head's environment: find this venv's
        # python first, not a system one without Ray.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        # The head must not join a cluster named by the caller's environment.
        env.pop("RAY_ADDRESS", None)
        hooks = self.temp_dir / "pyhooks"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(hooks)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep) if x])
        return env

    def start(self, timeout_s: float = 90.0) -> tuple[str, str]:
        """Start the head; return (GCS address, dashboard URL) once the job API answers."""
        if self.pgid is not None:
            raise RuntimeError("cluster already started")
        for port in (self.ports.gcs, self.ports.dashboard, self.ports.client_server):
            if port_in_use(port):
                raise RuntimeError(f"port {port} is in use (another cluster?); pick other ports")
        if not self.node_ip:
            import ray._private.services as services

            # The address fake nodes resolve for themselves; the GCS must be reached on it.
            self.node_ip = services.get_node_ip_address()
        self.write_config()
        (self.temp_dir / "pyhooks").mkdir(exist_ok=True)
        (self.temp_dir / "pyhooks" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        t0 = time.monotonic()
        log = (self.temp_dir / "ray-start.log").open("w")
        # A new session: every process of this cluster (head services, the monitor, the fake
        # nodes it launches, their workers) inherits this process group and nothing else has it.
        proc = subprocess.Popen(self.head_command(), env=self.head_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = proc.pid
        self.started_at = time.time()
        self._save()
        try:
            rc = proc.wait(timeout=timeout_s)
            if rc != 0:
                raise RuntimeError(f"ray start failed (rc {rc}):\n{self.start_log()[-3000:]}")
            wait_for(lambda: http_ok(f"{self.dashboard_url}/api/version"),
                     timeout_s - (time.monotonic() - t0), "the dashboard's job API")
        except BaseException:
            self.stop()
            raise
        return self.gcs_address, self.dashboard_url

    def start_log(self) -> str:
        path = self.temp_dir / "ray-start.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: its process group and their descendants.

        Ray puts each worker process (and a job's driver) in a process group of its own, so
        the group alone misses them; they are all descendants of a raylet of the group.
        """
        if self.pgid is None:
            return []
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == self.pgid:
                    found[p.pid] = p
        for p in list(found.values()):
            with contextlib.suppress(psutil.Error):
                for c in p.children(recursive=True):
                    found.setdefault(c.pid, c)
        return list(found.values())

    def stop(self, grace_s: float = 3.0) -> int:
        """End this cluster (head and fake nodes): SIGTERM its processes, SIGKILL what is left
        after ``grace_s`` (the GCS and the autoscaler do not exit on SIGTERM alone; waiting for
        them cost 10 s and changed nothing). Returns how many processes there were."""
        procs = self.processes()
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            for p in procs:
                if _running(p):
                    with contextlib.suppress(psutil.Error):
                        p.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: not any(_running(p) for p in procs), wait_s, "shutdown", 0.1)
        self.pgid = None
        with contextlib.suppress(FileNotFoundError):
            (self.temp_dir / STATE_FILE).unlink()
        return len(procs)

    # -- inspection and faults -------------------------------------------------------------

    def node_processes(self) -> dict[str, list[psutil.Process]]:
        """This cluster's processes by Ray node id.

        The provider gives each fake raylet its node id in the environment; the agents and
        workers of a node are that raylet's descendants. Every other process of the group
        (GCS, dashboard, autoscaler, the head's raylet and its workers) counts as the head's.
        """
        procs = self.processes()
        by_node: dict[str, list[psutil.Process]] = {}
        claimed: set[int] = set()
        log_monitors: dict[str, psutil.Process] = {}
        for p in procs:
            with contextlib.suppress(psutil.Error):
                for arg in p.cmdline():
                    # a node's log monitor (a child of the autoscaler, not of the raylet)
                    # logs to log_monitor<suffix>.out and its raylet to raylet<suffix>.out
                    # (suffix "" for the head, ".1", ".2", ... for the nodes)
                    if arg.startswith("--stdout-filepath=") and "/log_monitor" in arg:
                        log_monitors[Path(arg).name.removeprefix("log_monitor")
                                     .removesuffix(".out")] = p
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.name() != "raylet":
                    continue
                node_id = p.environ().get(NODE_ID_ENV)
                if not node_id or node_id == FAKE_HEAD_NODE_ID:
                    continue
                members = [p, *p.children(recursive=True)]
                out = next((a for a in p.cmdline() if a.startswith("--stdout_filepath=")), "")
                lm = log_monitors.get(Path(out).name.removeprefix("raylet").removesuffix(".out"))
                if lm is not None:
                    members.append(lm)
                by_node[node_id] = members
                claimed.update(m.pid for m in members)
        if procs:
            by_node[FAKE_HEAD_NODE_ID] = [p for p in procs if p.pid not in claimed]
        return by_node

    def nodes(self, include_dead: bool = False, processes: bool = True) -> list[NodeInfo]:
        """Nodes from the GCS (via the state API) with their type, resources and memory.

        ``processes=False`` skips the scan of this cluster's processes (type, pids and RSS stay
        empty): cheap enough to poll several times a second on a busy 2-core machine.
        """
        from ray.util.state import list_nodes

        procs = self.node_processes() if processes else {}
        out = []
        for n in list_nodes(address=self.dashboard_url, limit=1000, raise_on_missing_output=False):
            alive = n.state == "ALIVE"
            if not alive and not include_dead:
                continue
            mine = procs.get(n.node_id, []) if alive else []
            rss = 0
            for p in mine:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            node_type = HEAD_TYPE if n.is_head_node else _node_type(mine, n.resources_total)
            out.append(NodeInfo(node_id=n.node_id, node_type=node_type, alive=alive,
                                is_head=bool(n.is_head_node),
                                resources={k: float(v) for k, v in n.resources_total.items()
                                           if not k.startswith("node:")},
                                pids=[p.pid for p in mine], rss_mb=round(rss / MB, 1)))
        return out

    def worker_nodes(self, processes: bool = True) -> list[NodeInfo]:
        return [n for n in self.nodes(processes=processes) if not n.is_head]

    def kill_node(self, node_id: str) -> list[int]:
        """A spot preemption: every process of the fake node (raylet, agents, workers) dies at
        once, with no chance to clean up. All are stopped first and then killed, so none sees
        another die and shuts down gracefully. The autoscaler is not told: it must notice."""
        if node_id == FAKE_HEAD_NODE_ID:
            raise ValueError("refusing to kill the head node")
        procs = self.node_processes().get(node_id, [])
        if not procs:
            raise LookupError(f"no processes of node {node_id} in this cluster")
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(sig)
        wait_for(lambda: not any(_running(p) for p in procs), 10, f"node {node_id} to die", 0.05)
        return [p.pid for p in procs]

    # -- state for the CLI -----------------------------------------------------------------

    def _save(self) -> None:
        data = asdict(self)
        data["temp_dir"] = str(self.temp_dir)
        (self.temp_dir / STATE_FILE).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, temp_dir: Path) -> LocalAutoscalingCluster:
        """The cluster that ``up`` started in ``temp_dir``."""
        data = json.loads((temp_dir / STATE_FILE).read_text())
        data["temp_dir"] = Path(data["temp_dir"])
        data["ports"] = Ports(**data["ports"])
        data["worker_types"] = {k: WorkerType(**v) for k, v in data["worker_types"].items()}
        return cls(**data)


def _node_type(procs: Iterable[psutil.Process], resources: dict[str, float]) -> str:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.environ().get(NODE_TYPE_ENV)
            if t:
                return t
    return "gpu" if resources.get("GPU") else "cpu"


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie (a killed raylet stays one until the autoscaler reaps it)."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def ray_cli() -> str:
    """The ``ray`` of the running interpreter (a system ``ray`` may be another version)."""
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else "ray"


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def wait_for(cond: Any, timeout_s: float, what: str, every_s: float = 0.2) -> float:
    """Poll ``cond()`` until true; return the seconds it took, raise TimeoutError otherwise."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


# -- CLI -------------------------------------------------------------------------------------


def _print_nodes(cluster: LocalAutoscalingCluster) -> None:
    for n in cluster.nodes():
        res = ", ".join(f"{k}={v:g}" for k, v in sorted(n.resources.items())
                        if k not in ("memory", "object_store_memory"))
        osm = n.resources.get("object_store_memory", 0) / MB
        print(f"{n.node_id}  {n.node_type:16s} {res}; object store {osm:.0f} MB; "
              f"{len(n.pids)} processes, RSS {n.rss_mb:.0f} MB")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scarlet_ray.rehearsal",
                                 description="A local fake multi-node autoscaling Ray cluster "
                                             "shaped like cluster.yaml (no GPU, no cloud).")
    ap.add_argument("command", choices=["up", "down", "status", "kill-node"])
    ap.add_argument("node_id", nargs="?", help="for kill-node: the worker node to preempt")
    ap.add_argument("--temp-dir", type=Path, default=default_temp_dir())
    ap.add_argument("--gpu-workers", type=int, default=3, help="max gpu-l40s nodes")
    ap.add_argument("--cpu-workers", type=int, default=1, help="max cpu-worker nodes")
    ap.add_argument("--port", type=int, default=Ports.gcs)
    ap.add_argument("--dashboard-port", type=int, default=Ports.dashboard)
    args = ap.parse_args(argv)
    state = args.temp_dir / STATE_FILE
    if args.command == "up":
        if state.exists():
            print(f"a rehearsal cluster is already up ({state}); run `down` first",
                  file=sys.stderr)
            return 1
        cluster = LocalAutoscalingCluster(
            temp_dir=args.temp_dir,
            ports=Ports(gcs=args.port, dashboard=args.dashboard_port),
            worker_types=default_worker_types(args.gpu_workers, args.cpu_workers))
        t0 = time.monotonic()
        gcs, url = cluster.start()
        print(f"up in {time.monotonic() - t0:.1f} s\n  GCS address: {gcs}\n  jobs/dashboard: {url}"
              f"\n  config: {cluster.config_path}\n  logs: {args.temp_dir}/session_latest/logs\n"
              f"  ray job submit --address {url} --working-dir . -- python your_script.py")
        return 0
    if not state.exists():
        print(f"no rehearsal cluster in {args.temp_dir}", file=sys.stderr)
        return 1
    cluster = LocalAutoscalingCluster.load(args.temp_dir)
    if args.command == "down":
        print(f"stopped {cluster.stop()} processes")
    elif args.command == "status":
        _print_nodes(cluster)
    else:
        if not args.node_id:
            ap.error("kill-node needs a NODE_ID (see `status`)")
        print(f"killed {len(cluster.kill_node(args.node_id))} processes of {args.node_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
