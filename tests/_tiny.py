"""The tiny study that end-to-end tests run (phantom, 32 px, 2-3 epochs): one place for its TOML."""

from __future__ import annotations


def tiny_study(name: str = "tiny", *, seeds: str = "[0, 1]", phantom_n: int = 30, max_epochs: int = 2,
               boundary: bool | None = None, bootstrap: int | None = 50, workers: int | None = None,
               data: str = "", suite: str = '["gaussian_noise"]') -> str:
    """TOML text of the tiny study; the ``[execution]`` table comes last, so callers can append keys to it.
    ``data``: more lines of the ``[data]`` table (e.g. ``phantom_style = "small-thin"``); ``suite``: the TOML value
    of ``perturb.suite`` (``'"none"'`` for no perturbations)."""
    data = data if not data or data.endswith("\n") else data + "\n"
    eval_table = f"[eval]\nboundary = {str(boundary).lower()}\n" if boundary is not None else ""
    execution = "[execution]\nthreads = 1\n"
    if workers is not None:
        execution += f"workers = {workers}\n"
    if bootstrap is not None:
        execution += f"bootstrap = {bootstrap}\n"
    return f"""
name = "{name}"
seeds = {seeds}
[data]
source = "phantom"
phantom_n = {phantom_n}
size = 32
{data}[split]
test_fraction = 0.3
k_folds = 2
folds = [0]
[model]
name = "attention_unet"
base = 4
depth = 3
[train]
max_epochs = {max_epochs}
batch_size = 8
lr = 3e-3
[perturb]
suite = {suite}
severities = [3]
{eval_table}{execution}"""
