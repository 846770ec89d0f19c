"""Output folders and files: robustseg never writes over what it did not make.

Every command that writes into a folder (``phantom``, ``perturb``, ``evaluate-folder``, ``report``, the
``runs/`` and ``reports/`` folders of ``study`` / ``train`` / ``tune``) claims it first with
:func:`claim_output_dir`, before any work:

- a new folder, an empty one (OS litter such as ``.DS_Store`` or ``Thumbs.db`` does not count), or one holding
  the marker file :data:`MARKER` written by the same command (a re-run) is accepted;
- a non-empty folder that robustseg did not make, or that another robustseg command made, is refused with one
  line (exit 2) unless ``force`` (``--force``) is given; robustseg then writes its files beside the others,
  deletes nothing it did not write, and leaves no marker (so the next run needs ``--force`` again);
- an output folder equal to, or inside, an input folder is refused even with ``force`` (symlinks resolved):
  outputs mixed into the data would change the data set;
- the folder must be (or be creatable as) a writable folder (:func:`robustseg._paths.check_output_dir`).

The marker (``{"made_by": "robustseg <command>", "version": ..., "files": [...]}``) lists the files the last
run wrote, so a re-run removes exactly those that it no longer writes (a smaller phantom leaves no stale
images behind) and nothing else. :meth:`Output.staging` makes a multi-file output all-or-nothing: files are
written into a hidden staging folder inside the output folder and moved into place only when everything
was written; on any failure (a full disk included) the staging folder is removed and a folder that the
command created is removed again, so nothing half-written remains.

A single output file (``qc -o FILE``) is claimed with :func:`claim_output_file`: not a folder, its folder
creatable and writable, outside the input folders, and an existing file is replaced only when it is what the
same command writes (``signature``) or with ``force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from robustseg._io import write_json
from robustseg._paths import _TEMP, check_output_dir, clean_stale_temp
from robustseg.errors import InputError

MARKER = ".robustseg-output.json"
"""The file that says "made by robustseg <command>" in a folder robustseg created."""

LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory", "._.DS_Store"})
"""Files operating systems drop into folders; a folder holding only these counts as empty."""

_STAGING = ".robustseg-staging"


def expand(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` / ``~user`` expanded (every path a user types goes through this)."""
    return Path(os.path.expanduser(os.fspath(path)))


def _version() -> str:
    from robustseg import __version__

    return __version__


def read_marker(folder: Path) -> dict | None:
    """The marker of ``folder`` (None when absent or unreadable)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def _entries(folder: Path) -> list[str]:
    """Names in ``folder`` that count as content (not the marker, OS litter or robustseg's own temporaries,
    ``.<name>.tmp-<pid>``)."""
    names = []
    for entry in folder.iterdir():
        name = entry.name
        if name == MARKER or name in LITTER or name.startswith(_STAGING) or _TEMP.search(name):
            continue
        names.append(name)
    return sorted(names)


def check_not_inside(out: Path, inputs: Iterable[str | os.PathLike[str] | None], what: str) -> None:
    """InputError when ``out`` is, or lies inside, one of the ``inputs`` folders (symlinks resolved)."""
    resolved = expand(out).resolve()
    for item in inputs:
        if item is None:
            continue
        folder = expand(item)
        real = folder.resolve()
        if resolved == real or real in resolved.parents:
            raise InputError(f"{what} {out}: is inside the input folder {folder}; expected an output folder outside "
                             "the input data (outputs written there would become part of the data)")


@dataclass(frozen=True)
class Output:
    """A claimed output folder (see the module doc). ``foreign``: not empty and not ours (only with force)."""

    path: Path
    command: str
    existed: bool
    foreign: bool
    previous: tuple[str, ...] = ()
    """Files (relative paths) that the previous run of the command recorded in the marker."""

    def create(self) -> Path:
        """Create the folder (and its parents) and, unless it is foreign, the marker; returns the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.foreign:
            marker = read_marker(self.path)
            if marker is None or marker.get("command") != self.command:
                self._write_marker(list(self.previous))
            clean_stale_temp(self.path, depth=1, prefix=_STAGING)
        return self.path

    def _write_marker(self, files: list[str]) -> None:
        write_json(self.path / MARKER, {"made_by": f"robustseg {self.command}", "command": self.command,
                                        "version": _version(), "files": sorted(files)})

    def discard(self) -> None:
        """Undo :meth:`create` after a failure: remove the folder again if this command created it and it holds
        nothing but the marker."""
        if self.existed or not self.path.is_dir():
            return
        with contextlib.suppress(OSError):
            if not _entries(self.path):
                (self.path / MARKER).unlink(missing_ok=True)
                self.path.rmdir()

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """Yield a hidden folder to write every output file into; on success move them into place (replacing the
        files of the previous run, removing those it recorded but no longer writes) and record them in the
        marker; on failure remove the staging folder (and the output folder if this command created it)."""
        self.create()
        stage = self.path / f"{_STAGING}.tmp-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        try:
            stage.mkdir()
            yield stage
            self.publish(stage)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            self.discard()
            raise
        shutil.rmtree(stage, ignore_errors=True)

    def publish(self, stage: Path) -> list[str]:
        """Move the files under ``stage`` into the folder (same relative paths); returns them."""
        files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file() or p.is_symlink())
        new = set(files)
        if not self.foreign:  # remove what the previous run wrote and this one does not
            for rel in self.previous:
                if rel not in new:
                    _remove_file(self.path, rel)
        for rel in files:
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target)
        if not self.foreign:
            self._write_marker(files)
        return files


def _remove_file(root: Path, rel: str) -> None:
    """Remove ``root/rel`` (a file a previous run recorded) and the folders it leaves empty, up to ``root``."""
    target = root / rel
    if ".." in Path(rel).parts or Path(rel).is_absolute() or not target.is_file():
        return
    target.unlink(missing_ok=True)
    parent = target.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent


def claim_output_dir(path: str | os.PathLike[str], command: str, *, force: bool = False,
                     inputs: Iterable[str | os.PathLike[str] | None] = (), what: str = "output folder",
                     accept: Iterable[str] = (), legacy: Callable[[Path], list[str] | None] | None = None) -> Output:
    """Check the output folder of ``command`` before any work (see the module doc); writes nothing.

    ``accept``: other commands whose marker makes the folder ours too (``study`` and ``report`` write the same
    report folder). ``legacy``: recognises a folder written by robustseg before markers existed (a run folder
    with ``study.json``): it returns the files that the earlier run wrote (relative paths; a re-run may replace
    or remove those), or None when the folder is not one.
    """
    out = expand(path)
    check_output_dir(out, what)
    check_not_inside(out, inputs, what)
    if not out.is_dir():
        return Output(out, command, existed=False, foreign=False)
    entries = _entries(out)
    marker = read_marker(out)
    ok = {command, *accept}
    if not entries:
        previous = marker.get("files", []) if marker and marker["command"] in ok else []
        return Output(out, command, existed=True, foreign=False, previous=tuple(map(str, previous)))
    if marker is not None and marker["command"] in ok:
        return Output(out, command, existed=True, foreign=False, previous=tuple(map(str, marker.get("files", []))))
    earlier = legacy(out) if marker is None and legacy is not None else None
    if earlier is not None:
        return Output(out, command, existed=True, foreign=False, previous=tuple(earlier))
    if force:
        return Output(out, command, existed=True, foreign=True)
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    made = (f"made by {marker.get('made_by', 'robustseg ' + marker['command'])}" if marker is not None
            else f"not made by robustseg {command}")
    raise InputError(f"{what} {out}: not empty ({len(entries)} entries: {shown}) and {made}; expected a new or empty "
                     f"folder, or one written by an earlier 'robustseg {command}' (pass --force to write into it "
                     "anyway; robustseg never deletes files it did not write)")


def claim_output_file(path: str | os.PathLike[str], command: str, *, force: bool = False,
                      inputs: Iterable[str | os.PathLike[str] | None] = (), what: str = "-o/--output",
                      signature: Callable[[Path], bool] | None = None) -> Path:
    """Check a single output file before any work: not a folder, its folder creatable and writable, not inside an
    input folder, and an existing file replaced only when ``signature(file)`` says the same command wrote it, or
    with ``force``. Writes nothing; returns the path with ``~`` expanded."""
    out = expand(path)
    if out.is_dir():
        raise InputError(f"{what} {out}: is a folder; expected a file name to write (e.g. {out / (command + '.csv')})")
    check_output_dir(out.parent, f"{what} {out}: folder")
    check_not_inside(out, inputs, what)
    if out.exists() and not force and not (signature is not None and signature(out)):
        raise InputError(f"{what} {out}: exists and was not written by 'robustseg {command}'; expected a new file "
                         "name (pass --force to replace it)")
    return out


def first_line(path: Path, limit: int = 4096) -> str:
    """The first line of a text file (empty when unreadable); for output signatures."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(limit)
    except OSError:
        return ""
    return head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")


REPORT_FILE = "report.md"


def _legacy_report(folder: Path) -> list[str] | None:
    """A report folder written before markers existed (``report.md``, or the tuning section ``tune/tune.md``): its
    ``report.md``, ``figures/*.png``, ``tables/*.csv``."""
    if not (folder / REPORT_FILE).is_file():
        return [] if (folder / "tune" / "tune.md").is_file() else None
    files = [REPORT_FILE]
    for sub, pattern in (("figures", "*.png"), ("tables", "*.csv")):
        files += [p.relative_to(folder).as_posix() for p in sorted((folder / sub).glob(pattern)) if p.is_file()]
    return files


def claim_report_dir(out_dir: str | os.PathLike[str], runs_dir: str | os.PathLike[str] | None, *,
                     force: bool = False, inputs: Iterable[str | os.PathLike[str] | None] = (),
                     what: str = "report folder") -> Output:
    """The report folder of a study (written by ``study`` and ``report``): claimed like any output folder, and
    neither inside the run folder it reads nor holding it."""
    out = expand(out_dir)
    if runs_dir is not None:
        runs = expand(runs_dir).resolve()
        real = out.resolve()
        if real == runs or runs in real.parents or real in runs.parents:
            raise InputError(f"{what} {out}: overlaps the run folder {runs_dir}; expected separate folders for runs "
                             "and reports (execution.runs_dir, execution.reports_dir)")
    return claim_output_dir(out, "report", force=force, inputs=inputs, what=what, accept=("study",),
                            legacy=_legacy_report)
