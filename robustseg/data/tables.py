"""One reader for every table a user hands robustseg: the pixel-size CSV, ``meta.csv`` and any other list.

What Excel, LibreOffice and hand edits produce is read as meant, by construction:

- **Encodings**: a UTF-8 byte-order mark (Excel's "CSV UTF-8"), UTF-16 with or without a mark (Excel's "Unicode
  text"), UTF-32, plain UTF-8, and else Windows-1252 (Excel's "CSV (comma delimited)" on a Western Windows); a
  workbook saved with a ``.csv`` name (``.xlsx`` / ``.xls``) is named as such.
- **Separators**: ``,`` ``;`` tab or ``|``, whichever splits the header line into most columns (or the one an
  Excel ``sep=;`` first line names); quoted fields;
  ``\\r\\n``, ``\\n`` and old-Mac ``\\r`` line ends.
- **Empty rows and columns** (Excel's ``;;;;`` lines, trailing separators) are dropped; cells are stripped of
  spaces (non-breaking ones too). A row longer than the header with values in the extra cells gets columns
  ``column N``.
- **Every cell is a string**: ids stay as written (``007`` stays ``007``, ``7`` never becomes ``7.0``).
  :func:`parse_number` reads decimal commas (``0,123``) and thousands separators; :func:`typed_frame` turns the
  columns that are not ids into numbers or booleans where every value is one.

Bad tables are one :class:`~robustseg.errors.InputError` line naming the file and, where it helps, the line.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from robustseg.errors import InputError

SEPARATORS = (",", ";", "\t", "|")
_SPACES = " \t\u00a0\u2007\u202f\ufeff"
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_WORKBOOKS = ((b"PK\x03\x04", "an Excel workbook (.xlsx)"), (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls)"))


@dataclass(frozen=True)
class UserTable:
    """A table as read: header and rows of stripped strings (equal lengths), each row's line in the file."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]
    sep: str
    encoding: str

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame of strings (object dtype), columns named by the header."""
        return pd.DataFrame(list(self.rows), columns=list(self.header), dtype=object)

    def find(self, *names: str) -> int | None:
        """Index of the first column whose normalised header (:func:`norm_header`) is one of ``names``."""
        keys = [norm_header(h) for h in self.header]
        for name in names:
            if norm_header(name) in keys:
                return keys.index(norm_header(name))
        return None


def norm_header(text: str) -> str:
    """Header text compared loosely: case, spaces and underscores (``Pixel_in MM`` = ``pixel in mm``)."""
    return re.sub(r"[\s_]+", " ", str(text).strip(_SPACES).lower())


def decode(data: bytes, path: Path | str, what: str = "table") -> tuple[str, str]:
    """``(text, encoding)`` of a user's text file (see the module doc for the order tried)."""
    for magic, kind in _WORKBOOKS:
        if data.startswith(magic):
            raise InputError(f"{path}: is {kind}, not a text {what}; expected a CSV file (in Excel: File > Save As > "
                             "CSV UTF-8)")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding.removesuffix("-sig")), encoding
            except UnicodeDecodeError:
                break
    sample = data[:4096]
    if sample and sample.count(0) >= len(sample) // 4:  # UTF-16 without a mark: every other byte is NUL
        encoding = "utf-16-le" if sample[1::2].count(0) > sample[0::2].count(0) else "utf-16-be"
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            pass
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise InputError(f"{path}: cannot decode the {what} as text; expected UTF-8, UTF-16 or Windows-1252")


def read_bytes(path: str | Path, what: str = "table") -> bytes:
    """The bytes of a user's file; a folder, a missing or an unreadable file is an InputError naming it."""
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a {what} file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None


def _sniff(first_line: str) -> str:
    """The separator that splits the header line into most columns (ties: ``,`` ``;`` tab ``|`` in that order)."""
    best, width = ",", 1
    for sep in SEPARATORS:
        fields = next(csv.reader([first_line], delimiter=sep), [])
        if len(fields) > width:
            best, width = sep, len(fields)
    return best


def read_table(path: str | Path, what: str = "table") -> UserTable:
    """Read a user's delimited text table (see the module doc). The header is the first non-empty line."""
    path = Path(os.path.expanduser(str(path)))
    text, encoding = decode(read_bytes(path, what), path, what)
    text = text.lstrip("\ufeff")
    hint = re.match(r"[ \t]*sep=(.)[ \t,;]*(\r\n|\r|\n)", text, flags=re.I)  # Excel's "sep=;" first line
    if hint:
        text = "\n" * (hint.group(2) in ("\n", "\r\n", "\r")) + text[hint.end():]
    first = next((ln for ln in text.splitlines() if ln.strip(_SPACES + ",;|")), None)
    if first is None:
        raise InputError(f"{path}: the {what} is empty; expected a header line and one row per image")
    sep = hint.group(1) if hint else _sniff(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    raw: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            cells = [c.strip(_SPACES) for c in fields]
            if any(cells):
                raw.append((reader.line_num, cells))
    except csv.Error as exc:
        raise InputError(f"{path}: cannot parse the {what} (line {reader.line_num}: {exc})") from None
    (_, header), body = raw[0], raw[1:]
    width = max(len(header), *(len(cells) for _, cells in body)) if body else len(header)
    header = header + [""] * (width - len(header))
    rows = [cells + [""] * (width - len(cells)) for _, cells in body]
    keep = [k for k in range(width) if header[k] or any(r[k] for r in rows)]
    names = [header[k] or f"column {k + 1}" for k in keep]
    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        key = norm_header(name)
        if key in seen:
            raise InputError(f"{path}: the {what} has two columns named {name!r} (columns {seen[key] + 1} and {k + 1}); "
                             "expected distinct column names")
        seen[key] = k
    return UserTable(path, tuple(names), tuple(tuple(r[k] for k in keep) for r in rows),
                     tuple(line for line, _ in body), sep, encoding)


_NUMBER = re.compile(r"^[+-]?(\d+|\d{1,3}([ .,'\u00a0\u202f]\d{3})+)?([.,]\d+)?([eE][+-]?\d+)?$")
MISSING = frozenset({"", "nan", "na", "n/a", "none", "null", "-", "--", "#n/a"})
"""Cell values read as "no value"."""


def parse_number(text: str) -> float:
    """A number as people and spreadsheets write it: ``0.123``, ``0,123`` (one comma: a decimal comma), ``1.234,5``
    / ``1,234.5`` (both marks: the last one is the decimal mark), ``1e-3``; empty and ``NA``-like cells are NaN.
    Raises ValueError otherwise.

    >>> parse_number("0,123"), parse_number("1.234,5"), parse_number("1,234.5"), parse_number("")
    (0.123, 1234.5, 1234.5, nan)
    """
    s = str(text).strip(_SPACES)
    if s.lower() in MISSING:
        return math.nan
    if not _NUMBER.match(s) or not any(ch.isdigit() for ch in s):
        if s.lower() in ("inf", "+inf", "-inf", "infinity"):
            return float(s.lower().replace("infinity", "inf"))
        raise ValueError(text)
    mantissa, exp = re.split(r"[eE]", s)[0], (re.findall(r"[eE][+-]?\d+", s) or [""])[0]
    body = mantissa.replace(" ", "").replace("'", "").replace("\u00a0", "").replace("\u202f", "")
    dots, commas = body.count("."), body.count(",")
    if dots and commas:  # the one that comes last is the decimal mark
        decimal = "," if body.rfind(",") > body.rfind(".") else "."
        body = body.replace("." if decimal == "," else ",", "").replace(",", ".")
    elif commas == 1:  # a decimal comma (0,123); spreadsheets do not write thousands separators into CSV
        body = body.replace(",", ".")
    elif commas:  # 1,234,567: thousands
        body = body.replace(",", "")
    elif dots > 1:  # 1.234.567: thousands
        body = body.replace(".", "")
    return float(body + exp)


def _is_id(name: str, id_columns: Iterable[str]) -> bool:
    key = norm_header(name)
    return key in {norm_header(c) for c in id_columns} or key.endswith((" id", "id")) or key in ("label", "filename")


def typed_frame(table: UserTable, id_columns: Iterable[str] = ()) -> pd.DataFrame:
    """The table as a DataFrame: id columns (``id_columns``, and any named ``... id`` / ``label`` / ``filename``)
    stay strings; another column becomes boolean when every value is true/false (``True``, ``FALSE``, ``yes``),
    a number column when every value is a number (:func:`parse_number`; int64 when all are whole and none is
    missing), and stays strings otherwise."""
    out = table.frame()
    ids = list(id_columns)
    for name in out.columns:
        values = out[name].tolist()
        if _is_id(name, ids):
            continue
        if all(v == "" for v in values):  # an empty column (words like "none" stay words)
            out[name] = [math.nan] * len(values)
            continue
        present = [v for v in values if v.strip(_SPACES).lower() not in MISSING]
        if not present:
            continue
        if len(present) == len(values) and all(v.lower() in ("true", "false") for v in present):
            out[name] = [v.lower() == "true" for v in values]
            continue
        try:
            numbers = [parse_number(v) for v in values]
        except ValueError:
            continue
        if all(math.isfinite(x) and x == int(x) for x in numbers) and abs(max(numbers, key=abs)) < 2**53:
            out[name] = pd.array([int(x) for x in numbers], dtype="int64")
        else:
            out[name] = pd.array(numbers, dtype="float64")
    return out
