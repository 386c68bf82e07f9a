"""``scarlet``: one command, a subcommand per stage (DESIGN.md section 3)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from scarlet_ray.config import Config, load_config
from scarlet_ray.errors import UsageError, one_line

__all__ = ["UsageError", "build_parser", "main"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="job YAML (default: built-in laptop config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set attribution.n_masks=32 (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _stage_flags(p: argparse.ArgumentParser) -> None:
    """The output-folder flags of every stage (stagedir.StageOptions)."""
    p.add_argument("--restart", action="store_true",
                   help="delete this stage's earlier output in the output folder and start "
                        "over (needed to rerun a folder with settings that change the output)")
    p.add_argument("--skip-failed", action="store_true",
                   help="do not retry records that failed in an earlier run (errors.jsonl)")
    p.add_argument("--allow-empty", action="store_true",
                   help="an input without a usable record writes an empty output instead of "
                        "failing")


# (command path, module, help, argument adder)
Adder = Callable[[argparse.ArgumentParser], None]


def _args_context(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", required=True, help="seed samples JSONL")
    p.add_argument("--corpus", action="append", default=None,
                   help="corpus file (JSONL of id,title,text, or a known format); repeatable; "
                        "not needed with --index")
    p.add_argument("--output", required=True, help="output DIR (writes DIR/contexts.jsonl)")
    _with_index(p)


def _args_index_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", action="append", required=True,
                   help="corpus file (JSONL of id,title,text, or FORMAT:PATH); repeatable")
    p.add_argument("--output", required=True, help="INDEX_DIR (index.json, passages.sqlite, "
                                                   "shards/, ann/)")


def _with_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=None, metavar="INDEX_DIR",
                   help="search this index folder (scarlet index build) instead of encoding "
                        "the corpus; refused if built with another encoder or formatting")


def _args_synthesize(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contexts", required=True, help="DIR/contexts.jsonl")
    p.add_argument("--output", required=True, help="output DIR (writes DIR/samples.jsonl)")


def _args_attribute(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="samples JSONL")
    p.add_argument("--output", required=True, help="output DIR (writes DIR/attributions/)")


def _args_label(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attributions", required=True, help="Attribution Parquet directory")
    p.add_argument("--samples", required=True, help="samples JSONL")
    p.add_argument("--output", required=True, help="output DIR (writes DIR/train.jsonl)")


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="training examples JSONL")
    p.add_argument("--output", required=True, help="MODEL_DIR (sentence-transformers folder)")


def _args_eval_retrieval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="retriever: named default, HF id or folder")
    p.add_argument("--beir", required=True, help="BEIR-format directory")
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True)
    _with_index(p)


def _args_eval_attribution(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attributions", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--counterfactual", action="store_true",
                   help="also copy each answer-bearing gold passage with the answer swapped for "
                        "another sample's, attribute that sample with the generator, and report "
                        "the share of true passages each method ranks above their copy")


def _args_eval_rag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="retriever: named default, HF id or folder")
    p.add_argument("--samples", required=True)
    p.add_argument("--corpus", default=None, help="corpus to retrieve from (or --index)")
    p.add_argument("--output", required=True)
    _with_index(p)


def _args_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="RUN_DIR")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve the job and list its inputs, sets, models, outputs, cost "
                        "estimate and every problem; load and send nothing (exit 2 on a problem)")


def _args_data_convert(p: argparse.ArgumentParser) -> None:
    from scarlet_ray.datasets import FORMATS

    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument("--input", required=True, help="file or directory in that format")
    p.add_argument("--output", required=True, help="samples (or corpus) JSONL")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--passage-words", type=int, default=None,
                   help="split passages into chunks of at most this many words")


def _args_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "prepare"], nargs="?", default="list")


def _args_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, default=None, help="number of samples to attribute")
    p.add_argument("--passages", type=int, default=None,
                   help="corpus size: the cost of encoding it and the size of its index")


COMMANDS: list[tuple[tuple[str, ...], str, str, Adder]] = [
    (("context",), "context", "stage 1: shared contexts from seeds", _args_context),
    (("index", "build"), "index_build", "encode a corpus into an index folder (Ray Data)",
     _args_index_build),
    (("synthesize",), "synthesize", "stage 2: task samples on each context", _args_synthesize),
    (("attribute",), "attribute", "stage 3: perturbation attribution", _args_attribute),
    (("label",), "label", "stage 4: utilities -> pos/neg training examples", _args_label),
    (("train",), "train", "stage 5: train the retriever (Ray Train)", _args_train),
    (("evaluate", "retrieval"), "evaluate_retrieval", "nDCG/Recall on a BEIR set",
     _args_eval_retrieval),
    (("evaluate", "attribution"), "evaluate_attribution", "utility ranking vs gold passages",
     _args_eval_attribution),
    (("evaluate", "rag"), "evaluate_rag", "downstream RAG accuracy", _args_eval_rag),
    (("run",), "run", "all stages in order, with report", _args_run),
    (("data", "convert"), "data_convert", "convert a public data set to samples JSONL",
     _args_data_convert),
    (("models",), "models", "list or prepare the offline default models", _args_models),
    (("plan",), "plan", "estimate tokens, GPU-hours and cost of a job", _args_plan),
]


STAGE_MODULES = {"context", "index_build", "synthesize", "attribute", "label", "train", "evaluate_retrieval", "run",
                 "evaluate_attribution", "evaluate_rag"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scarlet",
        description="SCARLet on Ray: train utility-based retrievers via shared-context attribution.",
    )
    from scarlet_ray import __version__

    parser.add_argument("--version", action="version", version=f"scarlet-ray {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, module, help_, adder in COMMANDS:
        if len(path) == 1:
            p = top.add_parser(path[0], help=help_, description=help_)
        else:
            if path[0] not in groups:
                gp = top.add_parser(path[0], help=f"{path[0]} subcommands")
                groups[path[0]] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                    required=True)
            p = groups[path[0]].add_parser(path[1], help=help_, description=help_)
        _common(p)
        if module in STAGE_MODULES:
            _stage_flags(p)
        adder(p)
        p.set_defaults(_module=module)
    return parser


def _load_handler(module: str) -> Callable[[Config, argparse.Namespace], int] | None:
    name = f"scarlet_ray.commands.{module}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise
    return mod.main


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handler = _load_handler(args._module)
    label = " ".join(x for x in (args.command, getattr(args, "subcommand", None)) if x)
    if handler is None:
        print(f"scarlet {label}: not built yet", file=sys.stderr)
        return 2
    from scarlet_ray.redact import install_log_redaction, register_url_secrets

    install_log_redaction()
    for value in vars(args).values():  # a path argument may be a URL with user:key@ in it
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and "://" in v:
                register_url_secrets(v)
    try:
        cfg = load_config(args.config, args.overrides)
        return int(handler(cfg, args) or 0)
    except BaseException as exc:  # noqa: BLE001 - user errors become one line, bugs re-raise
        line = one_line(exc)
        if line is None:  # a bug: the traceback helps, but goes through the redaction too
            import traceback

            from scarlet_ray.redact import redact

            print(redact(traceback.format_exc()), file=sys.stderr, end="")
            return 1
        print(f"scarlet {label}: {line[0]}", file=sys.stderr)
        return line[1]


if __name__ == "__main__":
    sys.exit(main())
