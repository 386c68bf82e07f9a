"""The KV-cache keyword of a transformers base model, in one place.

transformers 5.20 renamed a model's ``past_key_values`` argument and output to ``cache``; the
project pins the version vLLM supports (<5.20, see pyproject.toml) but the scorers work on
both sides of the rename, so lifting the pin is a one-line change.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any


@cache
def _kwarg_for(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for ``model.forward`` under whichever name this version uses."""
    return {_kwarg_for(type(model)): cache}


def output_cache(out: Any) -> Any:
    """The cache a forward returned (``out.past_key_values`` before the rename, ``out.cache``
    after)."""
    got = getattr(out, "past_key_values", None)
    return got if got is not None else out.cache


__all__ = ["cache_kwargs", "output_cache"]
