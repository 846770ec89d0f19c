"""Python warnings go to a log file in the output folder of the work that raised them, not to the terminal.

A library warning (numpy's "Mean of empty slice", a torch deprecation) means nothing to a user reading a
progress bar, but it can matter to whoever debugs a number later. :func:`logged` records every warning raised
inside its block (in this process: pool workers wrap their own runs) and appends it, once per distinct
message and place with a count, to ``<folder>/warnings.log``. Nothing is printed; the command line may
say that the log exists. The log is appended to (workers of one study share it), one line per warning.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from robustseg._io import append_text

LOG_NAME = "warnings.log"
"""File name of the warning log inside an output folder."""


@dataclass(frozen=True)
class Caught:
    """One distinct warning: category, message, where it was raised and how often."""

    category: str
    message: str
    where: str
    count: int

    def line(self, context: str) -> str:
        times = f" (x{self.count})" if self.count > 1 else ""
        return f"[{context}] {self.category}: {self.message} ({self.where}){times}"


def _distinct(records: list[warnings.WarningMessage]) -> list[Caught]:
    counts: dict[tuple[str, str, str], int] = {}
    for w in records:
        key = (w.category.__name__, " ".join(str(w.message).split()), f"{Path(w.filename).name}:{w.lineno}")
        counts[key] = counts.get(key, 0) + 1
    return [Caught(c, m, where, n) for (c, m, where), n in counts.items()]


@contextlib.contextmanager
def logged(folder: str | Path, context: str) -> Iterator[list[Caught]]:
    """Record the warnings raised inside the block and append them to ``folder/warnings.log``.

    ``context`` names the work (``report``, ``run default-f0-s1-...``) on every line. Yields the list that
    receives the distinct warnings when the block ends (also when it raises), for callers that count them.
    Every warning is recorded (``always``), so one raised in a loop is counted, not dropped.

    >>> import tempfile, warnings
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with logged(d, "demo") as caught:
    ...         for _ in range(3):
    ...             warnings.warn("an example", UserWarning)
    ...     (caught[0].count, (Path(d) / LOG_NAME).read_text().startswith("[demo] UserWarning: an example"))
    (3, True)
    """
    found: list[Caught] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            yield found
        finally:
            found.extend(_distinct(records))
            if found:
                try:
                    Path(folder).mkdir(parents=True, exist_ok=True)
                    append_text(Path(folder) / LOG_NAME, "".join(c.line(context) + "\n" for c in found))
                except OSError:  # a log that cannot be written must not fail the work it describes
                    pass


_LINE = re.compile(r"^\[(?P<context>[^\]]*)\] (?P<category>\w+): (?P<message>.*?) \((?P<where>[^()]*:\d+)\)"
                   r"(?: \(x(?P<count>\d+)\))?$")


def read_log(path: str | Path) -> pd.DataFrame:
    """The lines of a ``warnings.log`` as a table ``context, category, message, where, count`` (empty when the
    file is absent; lines in another format are kept whole in ``message``)."""
    cols = ["context", "category", "message", "where", "count"]
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=cols)
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LINE.match(line)
        rows.append({**m.groupdict(), "count": int(m["count"] or 1)} if m else
                    {"context": "", "category": "", "message": line, "where": "", "count": 1})
    return pd.DataFrame(rows, columns=cols)


__all__ = ["LOG_NAME", "Caught", "logged", "read_log"]
