"""One registry class for models, losses and perturbations (timm's pattern).

Entries register at their definition site::

    LOSSES = Registry("loss")

    @LOSSES.register("ce")
    class CrossEntropy(nn.Module): ...

``create(name, *args, **kw)`` builds an entry; an unknown name, an unknown keyword or a keyword that the
entry fixes raises a one-line :class:`InputError` naming the valid choices. A registry is a read-only
mapping ``name -> entry`` (the factory, or the value given to :meth:`Registry.add`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from robustseg.errors import InputError

T = TypeVar("T")


def accepted_options(factory: Callable[..., Any], skip: int = 0) -> list[str] | None:
    """Keyword names ``factory`` accepts (after its first ``skip`` positional ones); None if it takes ``**kw``."""
    params = list(inspect.signature(factory).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


@dataclass(frozen=True)
class _Entry(Generic[T]):
    obj: T
    fixed: Mapping[str, Any] = field(default_factory=dict)
    positional: int = 0


class Registry(Mapping[str, T]):
    """Named entries of one ``kind`` ("model", "loss", "perturbation")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, _Entry[T]] = {}

    # --- registration ------------------------------------------------------------------------------
    def register(self, name: str | None = None, *, fixed: Mapping[str, Any] | None = None,
                 positional: int = 0) -> Callable[[T], T]:
        """Decorator: register a factory (class or function) under ``name`` (default: its ``__name__``).

        ``fixed`` keywords are always passed and may not be overridden; ``positional`` is the number of
        leading positional arguments :meth:`create` passes (not user options).
        """

        def deco(obj: T) -> T:
            self.add(name or obj.__name__, obj, fixed=fixed, positional=positional)  # type: ignore[attr-defined]
            return obj

        return deco

    def add(self, name: str, obj: T, *, fixed: Mapping[str, Any] | None = None, positional: int = 0) -> T:
        """Register ``obj`` under ``name``; a name can be registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = _Entry(obj, dict(fixed or {}), positional)
        return obj

    # --- lookup ------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def _entry(self, name: str) -> _Entry[T]:
        if name not in self._entries:
            raise InputError(f"{self.kind} {name!r}: unknown; valid names: {', '.join(self.names())}")
        return self._entries[name]

    def lookup(self, name: str) -> T:
        """The entry registered as ``name``; unknown names raise :class:`InputError`."""
        return self._entry(name).obj

    def options(self, name: str) -> list[str] | None:
        """Keyword options entry ``name`` accepts from users (None: any)."""
        entry = self._entry(name)
        valid = accepted_options(entry.obj, skip=entry.positional)  # type: ignore[arg-type]
        return None if valid is None else [v for v in valid if v not in entry.fixed]

    def create(self, name: str, *args: Any, **kw: Any) -> Any:
        """Call entry ``name`` with ``args`` and its fixed plus the given keywords, checking the keywords."""
        entry = self._entry(name)
        clash = sorted(set(kw) & set(entry.fixed))
        if clash:
            raise InputError(f"{self.kind} {name!r}: option(s) {', '.join(clash)} are fixed by this registry entry")
        valid = accepted_options(entry.obj, skip=len(args))  # type: ignore[arg-type]
        if valid is not None:
            unknown = sorted(set(kw) - set(valid))
            if unknown:
                shown = sorted(v for v in valid if v not in entry.fixed)
                raise InputError(f"{self.kind} {name!r}: unknown option(s) {', '.join(unknown)} "
                                 f"(valid: {', '.join(shown)})")
        try:
            return entry.obj(*args, **{**entry.fixed, **kw})  # type: ignore[operator]
        except TypeError as exc:
            raise InputError(f"{self.kind} {name!r}: bad option(s) {sorted(kw)}: {exc}") from exc

    # --- Mapping -----------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self._entries[name].obj

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
