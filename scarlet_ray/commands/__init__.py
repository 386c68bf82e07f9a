"""One module per ``scarlet`` subcommand, each exposing ``main(cfg, args) -> int``.

Modules are imported lazily by ``cli.py`` so ``scarlet --help`` stays fast and a stage that is not
built yet says so instead of failing at import.
"""
