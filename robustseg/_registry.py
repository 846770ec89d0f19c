"""Shared checks for the registries (models, losses): unknown options are named, with the valid ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from robustseg.errors import InputError


def accepted_options(factory: Callable[..., Any], skip: int = 0) -> list[str] | None:
    """Keyword names ``factory`` accepts (after its first ``skip`` positional ones); None if it takes ``**kw``."""
    params = list(inspect.signature(factory).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def build(kind: str, name: str, factory: Callable[..., Any], args: tuple[Any, ...], kw: Mapping[str, Any]) -> Any:
    """Call ``factory(*args, **kw)``; unknown keywords and bad values raise one-line ``InputError``s."""
    valid = accepted_options(factory, skip=len(args))
    if valid is not None:
        unknown = sorted(set(kw) - set(valid))
        if unknown:
            raise InputError(f"{kind} {name!r}: unknown option(s) {', '.join(unknown)} "
                             f"(valid: {', '.join(sorted(valid))})")
    try:
        return factory(*args, **kw)
    except TypeError as exc:
        raise InputError(f"{kind} {name!r}: bad option(s) {sorted(kw)}: {exc}") from exc
