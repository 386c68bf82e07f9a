"""One module per ``scarlet`` subcommand, each exposing ``main(cfg, args) -> int``.

Modules are imported lazily by ``cli.py`` so ``scarlet --help`` stays fast and a stage that is not
built yet says so instead of failing at import.
"""

from __future__ import annotations

import argparse

from scarlet_ray.stagedir import StageOptions


def stage_options(args: argparse.Namespace) -> StageOptions:
    """The output-folder flags every stage command takes (``cli._stage_flags``)."""
    return StageOptions(restart=bool(getattr(args, "restart", False)),
                        retry_failed=not getattr(args, "skip_failed", False),
                        allow_empty=bool(getattr(args, "allow_empty", False)))
