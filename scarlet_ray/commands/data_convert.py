"""``scarlet data convert``: a public data set -> samples / seeds / corpus JSONL."""

from __future__ import annotations

import argparse
from pathlib import Path

from scarlet_ray.config import Config
from scarlet_ray.datasets import FORMATS, convert
from scarlet_ray.errors import EmptyInput, UsageError
from scarlet_ray.manifest import print_table
from scarlet_ray.records import append_errors, write_jsonl


def main(cfg: Config, args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():  # checked before the conversion, which may take minutes
        raise UsageError(f"{out}: is a directory (--output takes a JSONL file path)")
    res = convert(args.format, args.input, limit=args.limit, passage_words=args.passage_words)
    errors = out.with_name(out.stem + ".errors.jsonl")
    if errors.exists():
        errors.unlink()
    if res.skipped:
        append_errors(errors, res.skipped)
    if not res.records:
        why = f"all {len(res.skipped)} records invalid (reasons in {errors})" if res.skipped \
            else "no records"
        raise EmptyInput(f"{args.input}: {why}")
    n = write_jsonl(out, res.records)
    rows = [("format", args.format), ("kind", FORMATS[args.format].kind), ("written", n),
            ("skipped", len(res.skipped)), ("output", str(out))]
    if res.skipped:
        rows.append(("skip reasons", str(errors)))
    print_table("scarlet data convert", rows)
    return 0
