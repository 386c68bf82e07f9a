"""What encoding a corpus and building its index will cost (``scarlet plan --passages N``).

Pure arithmetic, like ``attribution.plan``: encoder FLOPs are 2 x parameters x tokens, GPU-hours
come from the same device table (datasheet peak x an assumed MFU, or a measured rate), and the
sizes are those of the files ``scarlet index build`` writes and of the FAISS structures:

* fp16 shards: 2 x dim bytes per passage (on disk; searched through the page cache).
* passage store: ``plan.store_bytes_per_passage`` (SQLite rows of id, title and text).
* flat: no extra structure (exact search over the shards).
* ivf: the vectors again in fp32 (4 x dim) + an 8-byte id, plus the nlist x dim centroids.
* hnsw: 4 x dim + 2 x m links of 4 bytes at level 0 (+ ~1/m upper levels), + level offsets.
* ivfpq: pq_m code bytes + an 8-byte id, plus the centroids and 256 x dim PQ codebooks.

Build memory is one shard, the training sample (train_size x dim x 4) and the ANN index.
"""

from __future__ import annotations

from dataclasses import dataclass

from scarlet_ray.attribution.plan import Device, devices
from scarlet_ray.config import Config
from scarlet_ray.context.ann import default_nlist

# (parameters, embedding dimension) of common bi-encoders, from their published configs
KNOWN_ENCODERS: dict[str, tuple[float, int]] = {
    "bge-base": (109.5e6, 768),
    "bge-large": (335.1e6, 1024),
    "bge-small": (33.4e6, 384),
    "contriever": (109.5e6, 768),
    "e5-base": (109.5e6, 768),
    "all-minilm-l6": (22.7e6, 384),
    "all-mpnet-base": (109.5e6, 768),
}

ENCODER_MFU_NOTE = ("assumed MFU of a BERT-base encoder forward in bf16 with length-sorted "
                    "batches (plan.encoder_mfu); small encoders reach less: set it from a "
                    "measured build (scarlet index build reports passages/s)")


def encoder_shape(cfg: Config) -> tuple[float, int]:
    """(parameters, dimension): ``plan.encoder_params/_dim`` or the known-encoder table."""
    pl = cfg.plan
    found = None
    ref = cfg.models.retriever.lower().replace("_", "-")
    for key in sorted(KNOWN_ENCODERS, key=len, reverse=True):
        if key in ref:
            found = KNOWN_ENCODERS[key]
            break
    params = pl.encoder_params or (found[0] if found else None)
    dim = pl.encoder_dim or (found[1] if found else None)
    if params is None or dim is None:
        raise ValueError(f"models.retriever: {cfg.models.retriever!r} is not in the known-encoder "
                         f"table ({', '.join(KNOWN_ENCODERS)}); set plan.encoder_params and "
                         "plan.encoder_dim")
    return float(params), int(dim)


def ann_bytes(kind: str, n: int, dim: int, *, nlist: int | None = None, m: int = 32,
              pq_m: int = 32) -> int:
    """Bytes of the FAISS structure of ``kind`` over ``n`` vectors (memory ~ disk)."""
    if kind == "flat":
        return 0
    cells = nlist or default_nlist(n)
    if kind == "ivf":
        return n * (4 * dim + 8) + cells * dim * 4
    if kind == "hnsw":
        return int(n * (4 * dim + 2 * m * 4 * (1 + 1 / m) + 12))
    if kind == "ivfpq":
        return n * (pq_m + 8) + cells * dim * 4 + 256 * dim * 4
    raise ValueError(f"index kind {kind!r}")


@dataclass(frozen=True)
class DeviceRow:
    device: Device
    passages_per_s: float
    gpu_hours: float
    cost: float
    spot_cost: float | None
    source: str


@dataclass(frozen=True)
class IndexPlan:
    passages: int
    encoder: str
    params: float
    dim: int
    tokens: float
    flops: float
    shard_bytes: int
    store_bytes: int
    ann: dict[str, int]
    train_bytes: int
    shard_size: int
    rows: list[DeviceRow]


def make_index_plan(cfg: Config, passages: int) -> IndexPlan:
    if passages < 1:
        raise ValueError(f"--passages: must be >= 1, got {passages}")
    pl, ix = cfg.plan, cfg.index
    params, dim = encoder_shape(cfg)
    tokens = float(passages) * pl.tokens_per_passage
    flops = 2.0 * params * tokens
    rows = []
    for d in devices(cfg):
        rate = d.peak_tflops * 1e12 * pl.encoder_mfu / (2.0 * params * pl.tokens_per_passage)
        source = "estimate"
        hours = passages / rate / 3600.0
        spot = hours * d.spot_usd_per_hour if d.spot_usd_per_hour is not None else None
        rows.append(DeviceRow(d, rate, hours, hours * d.usd_per_hour, spot, source))
    ann = {k: ann_bytes(k, passages, dim, nlist=ix.nlist, m=ix.m, pq_m=ix.pq_m)
           for k in ("flat", "ivf", "hnsw", "ivfpq")}
    sample = min(passages, max(ix.train_size, 40 * (ix.nlist or default_nlist(passages))))
    return IndexPlan(passages, cfg.models.retriever, params, dim, tokens, flops,
                     passages * dim * 2, passages * pl.store_bytes_per_passage, ann,
                     sample * dim * 4, ix.shard_size, rows)


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def workload_rows(p: IndexPlan) -> list[tuple[str, str, str]]:
    return [
        ("passages", f"{p.passages:,}", "--passages"),
        ("encoder", p.encoder, "models.retriever"),
        ("encoder parameters, dimension", f"{p.params:.3g}, {p.dim}",
         "known-encoder table or plan.encoder_params/_dim"),
        ("tokens to encode", f"{p.tokens:,.0f}", "passages x plan.tokens_per_passage"),
        ("model FLOPs", f"{p.flops:.3e}", "2 x parameters x tokens"),
        ("fp16 shards (disk)", _size(p.shard_bytes), "2 x dim bytes per passage"),
        ("passage store (disk)", _size(p.store_bytes), "plan.store_bytes_per_passage"),
        ("shards of index.shard_size", f"{-(-p.passages // p.shard_size):,}",
         f"{p.shard_size:,} passages each (the unit of resume)"),
    ]


def size_rows(p: IndexPlan, chosen: str) -> list[tuple[str, ...]]:
    """Per index kind: the ANN structure, what search holds in memory, the build's peak."""
    shard = p.shard_size * p.dim * 4
    out = []
    for kind, b in p.ann.items():
        searched = ("shards via page cache " + _size(p.shard_bytes) if kind == "flat"
                    else _size(b) + (" + candidate rows" if kind == "ivfpq" else ""))
        peak = shard + b + (p.train_bytes if kind in ("ivf", "ivfpq") else 0)
        out.append((kind + (" (index.kind)" if kind == chosen else ""), _size(b), searched,
                    _size(peak)))
    return out


SIZE_HEADERS = ("kind", "ANN in memory and on disk", "search holds", "build peak (beyond the "
                "encoder)")


def device_rows(p: IndexPlan) -> list[tuple[str, ...]]:
    out = []
    for r in p.rows:
        spot = f"{r.spot_cost:,.2f}" if r.spot_cost is not None else "-"
        out.append((r.device.name, f"{r.passages_per_s:,.0f}", f"{r.gpu_hours:,.2f}",
                    f"{r.cost:,.2f}", spot, r.source))
    return out


DEVICE_HEADERS = ("device", "passages/s/GPU", "GPU-hours", "$ total", "$ total spot",
                  "throughput")
