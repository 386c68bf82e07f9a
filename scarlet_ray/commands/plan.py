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
