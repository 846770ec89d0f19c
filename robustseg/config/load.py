"""Reading study files: TOML, dotted ``--set KEY=VALUE`` overrides, and pydantic errors as one-line messages.

``validate(model, data, where)`` is the one adapter between pydantic and the package's error contract:
the first problem becomes an ``InputError`` (CLI exit 2) of one line naming the file, the dotted key, the
value and what was expected, e.g. ``s.toml: key 'train.lr' = 0; expected a number > 0``.
"""

from __future__ import annotations

import copy
import tomllib
import types
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from robustseg.config.schema import ARM_TABLES, TABLES, ArmTables, StudyConfig, distinct
from robustseg.errors import InputError

M = TypeVar("M", bound=BaseModel)

PACKAGED = ("quickstart", "loss-ablation", "thesis")
"""Study files shipped inside the package (``robustseg/studies/*.toml``)."""


def packaged_study(name: str = "quickstart") -> Traversable:
    """The shipped study file ``name`` (works from a wheel as well as from a source checkout)."""
    return resources.files("robustseg") / "studies" / f"{name}.toml"


STDIN = "-"
"""The study path that means: read the study from standard input (``robustseg study -``)."""


def is_stdin(path: object) -> bool:
    """Whether ``path`` names standard input: ``-``, or ``/dev/stdin`` and its aliases."""
    text = str(path)
    return text == STDIN or text in ("/dev/stdin", "/proc/self/fd/0", "/dev/fd/0")


def study_bytes(path: str | Path | Traversable) -> bytes:
    """The bytes of a study file: standard input for ``-`` / ``/dev/stdin`` (a pipe or a redirect), a packaged
    study, or a file (``~`` expanded). A folder, a missing or an unreadable file is an ``InputError`` naming it."""
    import os
    import sys

    if is_stdin(path):
        if sys.stdin is None or sys.stdin.closed:
            raise InputError(f"{path}: standard input is closed; expected a study file piped in "
                             "(robustseg study - < study.toml)")
        if sys.stdin.isatty():
            raise InputError(f"{path}: standard input is a terminal; expected a study file piped in "
                             "(robustseg study - < study.toml)")
        stream = getattr(sys.stdin, "buffer", None)
        return stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
    if isinstance(path, Traversable) and not isinstance(path, Path):
        if not path.is_file():
            raise InputError(f"{path}: study file not found")
        return path.read_bytes()
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.toml"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise InputError(f"{path}: is a folder{hint}; expected a study file (TOML)")
    if not path.exists():
        raise InputError(f"{path}: study file not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the study file ({exc.strerror or type(exc).__name__})") from None


def read_toml(path: str | Path | Traversable) -> dict[str, Any]:
    """Parse a TOML study file (:func:`study_bytes`); a byte-order mark (Notepad's "UTF-8 with BOM", UTF-16) is
    tolerated; a missing or malformed file is an ``InputError`` naming it."""
    from robustseg.data.tables import decode

    where = "<stdin>" if is_stdin(path) else path
    text, _ = decode(study_bytes(path), where, "study file")
    if not text.strip("\ufeff \t\r\n"):
        raise InputError(f"{where}: the study file is empty; expected TOML tables (e.g. name = \"my-study\" and a "
                         "[data] table; see studies/quickstart.toml)")
    try:
        return tomllib.loads(text.lstrip("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML ({exc})") from None


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` where VALUE is a TOML value (bare words are taken as strings)."""
    if "=" not in item:
        raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.max_epochs=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    """``d[a][b][c] = value`` for ``dotted = "a.b.c"``, creating tables on the way."""
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise InputError(f"--set {dotted}: '{p}' is not a table")
    d[parts[-1]] = value


def apply_overrides(user: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``user`` with the ``--set`` overrides placed in it."""
    out = copy.deepcopy(dict(user))
    for item in overrides:
        set_path(out, *parse_override(item))
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base`` table by table (values in ``over`` win)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k not in ("colormap", "suite"):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --- pydantic errors -> one line --------------------------------------------------------------------


def validate(model: type[M], data: Any, where: str, prefix: tuple[str, ...] = ()) -> M:
    """``model.model_validate(data)``; the first error becomes a one-line ``InputError`` (see module doc).

    ``prefix`` is put before the keys of ``model`` (e.g. ``("train",)`` for an arm's merged train table).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(error_message(exc.errors(include_url=False)[0], model, data, where, prefix)) from None


def error_message(err: Mapping[str, Any], model: type[BaseModel], data: Any, where: str,
                  prefix: tuple[str, ...] = (), keys: Mapping[str, str] | None = None) -> str:
    """One line for one pydantic error: file, dotted key, value and what was expected.

    ``keys`` renames top-level fields to the study keys they come from (``TrainConfig.loss`` is ``loss.name``);
    an empty ``where`` leaves the file out (the caller names it).
    """
    line = _line(_message(err, model, data, where, prefix), where)
    if keys:
        for field, key in keys.items():
            line = line.replace(f"key '{field}'", f"key '{key}'", 1)
    return line


def _line(message: str, where: str) -> str:
    return message if where else message.split(": ", 1)[1]


def _message(err: Mapping[str, Any], model: type[BaseModel], data: Any, where: str,
             prefix: tuple[str, ...]) -> str:
    where = where or "-"
    path, field, owner = _walk(model, err["loc"])
    if path[:1] == ["arms"] and len(path) >= 2 and owner is not StudyConfig:  # [arms.NAME] tables
        where, path = f"{where} [arms.{path[1]}]", path[2:]
    if err["type"] == "study_key":  # raised by a model validator about one of its keys
        key = ".".join([*prefix, *path, err["ctx"]["key"]])
        return f"{where}: key '{key}' = {err['ctx']['value']!r}; expected {err['ctx']['expected']}"
    key = ".".join([*prefix, *path])
    if err["type"] == "extra_forbidden":
        table = ".".join([*prefix, *path[:-1]])
        if not table and isinstance(err["input"], dict):
            valid = ARM_TABLES if owner is ArmTables else TABLES
            return f"{where}: unknown table '{path[-1]}' (valid: {', '.join(valid)})"
        known = sorted(f"{table}.{k}" if table else k for k in owner.model_fields)
        return f"{where}: unknown key '{key}' (valid keys here: {', '.join(known)})"
    if err["type"] == "value_error":  # a validator's own words (registry names, tuning ranges)
        expected = str(err["ctx"]["error"])
    else:
        expected = _expected(field) if field is not None else "a table" if err["type"] in _TABLE_TYPES else err["msg"]
    if err["type"] == "missing":
        return f"{where}: key '{key}' is required; expected {expected}"
    value = _lookup(data, path, err.get("input"))
    return f"{where}: key '{key}' = {value!r}; expected {expected}"


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], FieldInfo | None, type[BaseModel]]:
    """The dotted key an error location names, the field there and the model that owns it."""
    path: list[str] = []
    field: FieldInfo | None = None
    cls: type[BaseModel] | None = model
    owner = model
    keyed = False  # the previous part was a table of tables (arms, data.external): next part is a name
    for part in loc:
        if keyed:
            path.append(str(part))
            keyed, field = False, None
            continue
        if cls is None or not isinstance(part, str):
            break
        if part not in cls.model_fields:
            if cls.model_config.get("extra") == "forbid":
                path.append(part)  # an unknown key (extra_forbidden)
                owner, field = cls, None
            break
        owner, field = cls, cls.model_fields[part]
        path.append(part)
        cls, keyed = _model_in(field.annotation)
    return path, field, owner


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model class a field holds (directly, optionally, or as values of a dict) and whether via a dict."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        inner, _ = _model_in(args[1])
        return inner, inner is not None
    if origin in (Union, types.UnionType):
        for a in args:
            inner, keyed = _model_in(a)
            if inner is not None:
                return inner, keyed
    return None, False


def _lookup(data: Any, path: list[str], default: Any) -> Any:
    for part in path:
        if not isinstance(data, Mapping) or part not in data:
            return default
        data = data[part]
    return data


def _expected(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "expected" in extra:
        return str(extra["expected"])
    return _describe(field.annotation, list(field.metadata))


_TABLE_TYPES = ("model_type", "model_attributes_type", "dict_type")


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _toml(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else repr(v)


def _describe(ann: Any, metadata: list[Any]) -> str:
    """A phrase for what a type with constraints accepts ("an integer in [1, 4096]", "one of 'a', 'b')."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        inner, *extras = args
        for e in extras:
            if isinstance(e, FieldInfo) and isinstance(e.json_schema_extra, dict) and "expected" in e.json_schema_extra:
                return str(e.json_schema_extra["expected"])
        more = [m for e in extras for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return _describe(inner, metadata + more)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if set(members) == {float, int}:
            return "a number" + _range_text(metadata)
        choices = [c for a in members if get_origin(a) is Literal for c in get_args(a)]
        choices += [True, False] * (bool in members)
        if choices and len(choices) == sum(len(get_args(a)) if get_origin(a) is Literal else 2 for a in members):
            return "one of " + ", ".join(_toml(c) for c in choices)
        return " or ".join(_describe(a, metadata) for a in members)
    if origin is Literal:
        return "one of " + ", ".join(_toml(c) for c in args)
    if origin is list:
        inner = _describe(args[0], []) if args else "values"
        nonempty = any(isinstance(m, at.MinLen) and m.min_length >= 1 for m in metadata)
        unique = any(getattr(m, "func", None) is distinct for m in metadata)
        plural = inner.replace("an integer", "integers").replace("one of", "names from")
        return f"a {'non-empty ' if nonempty else ''}list of {'distinct ' if unique else ''}{plural}"
    if origin is dict or (isinstance(ann, type) and issubclass(ann, BaseModel)):
        return "a table"
    return {bool: "true or false", int: "an integer" + _range_text(metadata), float: "a number" + _range_text(metadata),
            str: "a string"}.get(ann, getattr(ann, "__name__", str(ann)))


def _range_text(metadata: list[Any]) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for m in metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {_num(hi)}"
    return ""


def validate_study(user: Mapping[str, Any], where: str) -> StudyConfig:
    """Validate a whole study (file + overrides, defaults filled in)."""
    return validate(StudyConfig, user, where)
