"""``scarlet plan``: tokens, GPU-hours and cost of attributing N samples, before anything runs."""

from __future__ import annotations

import argparse

from scarlet_ray.attribution.plan import (
    DEVICE_HEADERS,
    MFU_NOTE,
    PRICE_NOTE,
    PRICES_AS_OF,
    device_rows,
    make_plan,
    workload_rows,
)
from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table


def main(cfg: Config, args: argparse.Namespace) -> int:
    if args.samples is None and args.passages is None:
        from scarlet_ray.errors import UsageError

        raise UsageError("--samples N (attribution) and/or --passages N (index build)")
    if args.passages is not None:
        _index(cfg, args.passages)
    if args.samples is None:
        return 0
    plan = make_plan(cfg, args.samples)
    print_table(f"scarlet plan: {cfg.name} (attribution stage)", workload_rows(plan),
                headers=("quantity", "value", "source"))
    print_table(f"throughput and cost per GPU type (prices: estimates as of {PRICES_AS_OF})",
                device_rows(plan), headers=DEVICE_HEADERS)
    print("estimate = datasheet bf16 peak x " + MFU_NOTE + ".")
    print("prices: " + PRICE_NOTE + ".")
    print("override per device with --set plan.gpus.<NAME>.measured_tokens_per_s=... "
          "(or peak_tflops, mfu, usd_per_hour, spot_usd_per_hour); GPU-hours assume one "
          "generator per GPU and exclude model loading, idle and prefix-cache savings.")
    return 0


def _index(cfg: Config, passages: int) -> None:
    from scarlet_ray.index.plan import (
        DEVICE_HEADERS as IDX_HEADERS,
    )
    from scarlet_ray.index.plan import (
        ENCODER_MFU_NOTE,
        SIZE_HEADERS,
        make_index_plan,
        size_rows,
    )
    from scarlet_ray.index.plan import device_rows as idx_device_rows
    from scarlet_ray.index.plan import workload_rows as idx_workload_rows

    p = make_index_plan(cfg, passages)
    print_table(f"scarlet plan: encoding {passages:,} passages (scarlet index build)",
                idx_workload_rows(p), headers=("quantity", "value", "source"))
    print_table("index size per kind", size_rows(p, cfg.index.kind), headers=SIZE_HEADERS)
    print_table(f"encoding time and cost per GPU type (MFU {cfg.plan.encoder_mfu:.0%})",
                idx_device_rows(p), headers=IDX_HEADERS)
    print("estimate = datasheet bf16 peak x " + ENCODER_MFU_NOTE + ".")
