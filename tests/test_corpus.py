"""Run the fault and bad-input corpus (``tests/corpus/cases.py``): each case has one expected outcome."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from corpus.build import half_written, snapshot
from corpus.cases import CASES, Case, Ctx

from robustseg.cli.main import main


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.needs or c.slow else [])
                                  for c in CASES])
def test_case(case: Case, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> None:
    ctx = Ctx(qc_study=request.getfixturevalue("qc_study") if "qc_study" in case.needs else None)
    folder = tmp_path / "case"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(folder))
    argv = case.build(folder, ctx)
    if case.stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((folder / case.stdin).read_bytes())))
    before = snapshot(folder)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == case.exit, f"{case.what}: exit {code}, expected {case.exit}\n{out[-2000:]}\n{err[-2000:]}"
    if case.exit != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert len(errors) == 1, err
        assert re.search(case.message, errors[0]), (case.message, errors[0])
        assert snapshot(folder) == before, "files changed on a failed command"
    else:
        if case.message:
            assert re.search(case.message, out + err), (case.message, out[-2000:], err[-2000:])
        after = snapshot(folder)
        for rel in case.unchanged:
            assert {k: v for k, v in after.items() if k.startswith(rel)} == \
                   {k: v for k, v in before.items() if k.startswith(rel)}, f"{rel} changed"
        if case.check is not None:
            case.check(folder)
    assert half_written(folder, before) == []


def test_every_case_has_a_distinct_name_and_an_outcome() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    for c in CASES:
        assert c.exit in (0, 1, 2) and c.what and (c.exit == 0 or c.message), c.name
        re.compile(c.message)
