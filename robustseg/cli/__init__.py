"""Command-line interface: argparse and the single progress renderer (the only place that prints)."""

from robustseg.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
