"""The package's exceptions. One base class; the CLI maps ``exit_code`` to the process status."""

from __future__ import annotations


class RobustsegError(Exception):
    """Base class of every error robustseg raises on purpose."""

    exit_code = 1


class InputError(RobustsegError):
    """Bad user input (file, key or value). The message is one line naming what and what was expected."""

    exit_code = 2


class RunError(RobustsegError):
    """A run failed while executing (NaN loss, out of memory, ...). Recorded, never swallowed."""

    exit_code = 1


class WriteError(RobustsegError, OSError):
    """A file could not be written (disk full, file-size limit, I/O error). Nothing half-written is left behind.

    Also an ``OSError`` (``errno`` is set), so code that handles OSErrors keeps working.
    """

    exit_code = 1
