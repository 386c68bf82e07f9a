"""``scarlet models``: list the named offline defaults, or prepare (convert/cache) them."""

from __future__ import annotations

import argparse
import time

from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table
from scarlet_ray.models.registry import NAMED_MODELS, cache_root, is_available


def main(cfg: Config, args: argparse.Namespace) -> int:
    if args.action == "prepare":
        from scarlet_ray.models.encoder import load_encoder
        from scarlet_ray.models.generator import load_generator
        from scarlet_ray.models.ner import load_ner

        rows = []
        for name, loader in ((cfg.models.generator, load_generator),
                             (cfg.models.retriever, load_encoder), (cfg.models.ner, load_ner)):
            t0 = time.time()
            obj = loader(name)
            extra = getattr(obj, "dtype_reason", "")
            rows.append((name, "ready", f"{time.time() - t0:.1f}s", extra))
        print_table("scarlet models prepare", rows, headers=("model", "status", "load", "note"))
        return 0
    rows = [(m.name, m.kind, m.package, "yes" if is_available(m.name) else "no", m.description)
            for m in NAMED_MODELS.values()]
    print_table(f"named models (cache: {cache_root()})", rows,
                headers=("name", "kind", "package", "installed", "what"))
    return 0
