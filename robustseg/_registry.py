"""One registry class for models, losses and perturbations (timm's pattern).

Entries register at their definition site::

    LOSSES = Registry("loss")

    @LOSSES.register("ce")
    class CrossEntropy(nn.Module): ...

``create(name, *args, **kw)`` builds an entry; an unknown name, an unknown keyword or a keyword that the
entry fixes raises a one-line :class:`InputError` naming the valid choices. A registry is a read-only
mapping ``name -> entry`` (the factory, or the value given to :meth:`Registry.add`).

**Plugins.** A registry with an entry-point ``group`` also resolves, on first use, names that are not
built in (the README section "Your own model, loss or perturbation (plugins)" describes them for users):

- ``"package.module:factory"``: the attribute ``factory`` (dotted for nested ones) of an importable module;
- an entry point of ``group`` (``robustseg.models``, ``robustseg.losses``, ``robustseg.perturbations``)
  declared by an installed distribution.

A plugin's keyword options are checked like a built-in's (unknown keys named with the valid ones), and,
where the factory annotates them, their types too, with TOML's strictness (``"8"`` is not an integer,
``"yes"`` not a boolean). :meth:`Registry.plugin` says where a plugin comes from (its distribution and
version), which the run spec records and the run id hashes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from robustseg.errors import InputError

T = TypeVar("T")


def accepted_options(factory: Callable[..., Any], skip: int = 0) -> list[str] | None:
    """Keyword names ``factory`` accepts (after its first ``skip`` positional ones); None if it takes ``**kw``."""
    params = list(inspect.signature(factory).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


OBJECT_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
"""``package.module:attribute``: a plugin named by where it lives."""


@dataclass(frozen=True)
class _Entry(Generic[T]):
    obj: T
    fixed: Mapping[str, Any] = field(default_factory=dict)
    positional: int = 0
    plugin: Mapping[str, Any] | None = None
    """Where a plugin comes from (None: built in); see :meth:`Registry.plugin`."""


@functools.cache
def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """The entry points of ``group`` declared by installed distributions (read once per process)."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


@functools.cache
def _distributions_of_modules() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def _distribution(module: str) -> metadata.Distribution | None:
    """The installed distribution that provides top-level module ``module`` (None: a plain folder on sys.path)."""
    for name in _distributions_of_modules().get(module.split(".")[0], []):
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _source_sha256(module: str) -> str | None:
    """SHA-256 of the source file of an imported ``module`` (for plugins that are not an installed distribution)."""
    import sys

    path = getattr(sys.modules.get(module), "__file__", None)
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


class Registry(Mapping[str, T]):
    """Named entries of one ``kind`` ("model", "loss", "perturbation").

    ``group``: the entry-point group plugins are found in (None: built-in entries only). ``positional``: the
    number of leading positional arguments :meth:`create` passes to a plugin (models: in_channels,
    num_classes). ``adapt(name, obj)`` turns a loaded plugin object into this registry's entry type.
    """

    def __init__(self, kind: str, *, group: str | None = None, positional: int = 0,
                 adapt: Callable[[str, Any], T] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._plugin_positional = positional
        self._adapt = adapt
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

    # --- plugins ------------------------------------------------------------------------------------
    def _plugin_names(self) -> list[str]:
        return [n for n in _entry_points(self.group) if n not in self._entries] if self.group else []

    def has(self, name: str) -> bool:
        """Whether ``name`` is built in, an entry point of the group, or a ``module:attribute`` reference
        (checked for syntax only: it is imported on first use)."""
        if not isinstance(name, str):
            return False
        return name in self._entries or (self.group is not None
                                         and (name in _entry_points(self.group) or bool(OBJECT_REF.match(name))))

    def _load_plugin(self, name: str) -> _Entry[T]:
        """Import plugin ``name`` (an entry point or ``module:attribute``) and register it."""
        where = f"{self.kind} {name!r}"
        if name in _entry_points(self.group):  # type: ignore[arg-type]
            ep = _entry_points(self.group)[name]  # type: ignore[index]
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin: one line, not a traceback
                raise InputError(f"{where}: entry point {ep.value!r} of group {self.group!r} cannot be loaded "
                                 f"({type(exc).__name__}: {exc})") from None
            dist = ep.dist
            info = {"kind": self.kind, "name": name, "object": ep.value, "entry_point": self.group,
                    "distribution": dist.name if dist else None, "version": dist.version if dist else None}
            module = ep.module
        else:
            module, _, attr = name.partition(":")
            try:
                obj = importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"{where}: cannot import module {module!r} ({type(exc).__name__}: {exc}); "
                                 "expected an importable 'package.module:factory'") from None
            for part in attr.split("."):
                if not hasattr(obj, part):
                    raise InputError(f"{where}: module {module!r} has no attribute {attr!r}")
                obj = getattr(obj, part)
            dist = _distribution(module)
            info = {"kind": self.kind, "name": name, "object": name, "entry_point": None,
                    "distribution": dist.metadata["Name"] if dist else None, "version": dist.version if dist else None}
        if dist is None:  # a module on sys.path but not installed: its source identifies it
            info["source_sha256"] = _source_sha256(module)
        if self._adapt is not None:
            obj = self._adapt(name, obj)
        elif not callable(obj):
            raise InputError(f"{where}: {info['object']!r} is not callable; expected a factory (class or function)")
        entry = _Entry(obj, {}, self._plugin_positional, info)
        self._entries[name] = entry
        return entry

    def plugin(self, name: str) -> dict[str, Any] | None:
        """Where plugin ``name`` comes from: ``kind``, ``name``, ``object`` (``module:attribute``), ``entry_point``
        (the group, or None), ``distribution`` and ``version`` (None when the module is not installed as a
        distribution; ``source_sha256`` of its file then); None for a built-in entry."""
        plugin = self._entry(name).plugin
        return dict(plugin) if plugin is not None else None

    # --- lookup ------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Built-in names and the entry points of the plugin group, sorted."""
        return sorted([*self._entries, *self._plugin_names()])

    def _entry(self, name: str) -> _Entry[T]:
        if name in self._entries:
            return self._entries[name]
        if self.has(name):
            return self._load_plugin(name)
        hint = ", or 'package.module:factory'" if self.group else ""
        raise InputError(f"{self.kind} {name!r}: unknown; valid names: {', '.join(self.names())}{hint}")

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
        if entry.plugin is not None:
            kw = _check_types(entry.obj, kw, f"{self.kind} {name!r}")
        caught: tuple[type[Exception], ...] = (TypeError, ValueError) if entry.plugin is not None else (TypeError,)
        try:
            return entry.obj(*args, **{**entry.fixed, **kw})  # type: ignore[operator]
        except InputError:
            raise
        except caught as exc:
            raise InputError(f"{self.kind} {name!r}: bad option(s) {sorted(kw)}: {exc}") from exc

    # --- Mapping (the entries loaded so far) ---------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self._entries[name].obj

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _check_types(factory: Callable[..., Any], kw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check each option against the factory's annotation with TOML's strictness; the validated values
    (a TOML array becomes the annotated tuple). Annotations pydantic cannot check are left to the factory."""
    from pydantic import TypeAdapter, ValidationError

    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        hints = inspect.get_annotations(target, eval_str=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check
        return dict(kw)
    out = dict(kw)
    for key, value in kw.items():
        annotation = hints.get(key, inspect.Parameter.empty)
        if annotation is inspect.Parameter.empty or annotation is Any:
            continue
        try:
            adapter = TypeAdapter(annotation)
            blob = json.dumps(value)
        except Exception:  # noqa: BLE001 - a type pydantic does not know, or a value JSON cannot hold
            continue
        try:
            out[key] = adapter.validate_json(blob, strict=True)
        except ValidationError as exc:
            expected = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
            reason = exc.errors(include_url=False)[0]["msg"]
            raise InputError(f"{where}: option {key} = {value!r}; expected {expected} ({reason})") from None
    return out
