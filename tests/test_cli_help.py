"""``--help`` of every (sub)command prints, exits 0, and shows no argparse escape.

argparse %-formats argument help strings (so a literal percent there is written ``%%``) but
prints descriptions as they are (unless they contain ``%(prog)``), so a ``%%`` in a
description reaches the user doubled; a lone ``%`` in an argument's help crashes ``--help``.
The commands are discovered from the parser tree, so a new subcommand is covered without
editing this file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from ntkscope.cli.main import build_parser, main


def _commands(parser: argparse.ArgumentParser,
              prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser tree, the top level ``()`` included."""
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _commands(child, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def test_tree_has_every_subcommand() -> None:
    top = {c[0] for c in COMMANDS if len(c) == 1}
    assert {"check", "ntk-variance", "variance", "figure", "reproduce", "data",
            "results"} <= top
    assert ("data", "download") in COMMANDS and ("results", "export") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ntkscope")
def test_help_has_no_doubled_percent(command: tuple[str, ...],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: ntkscope" in out
    assert "%%" not in out, f"doubled percent in `{' '.join(command)} --help`"
    assert "%(" not in out, f"unexpanded %-format in `{' '.join(command)} --help`"


@pytest.mark.parametrize("command", [("check",), ("ntk-variance",), ("variance",)],
                         ids=lambda c: c[0])
def test_percent_shown_once(command: tuple[str, ...],
                            capsys: pytest.CaptureFixture[str]) -> None:
    """The commands whose description states the 95% interval print it as ``95%``."""
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert "95% bootstrap" in " ".join(capsys.readouterr().out.split())


def test_real_cli_help() -> None:
    """The installed entry point, as a user runs it (one subprocess)."""
    out = subprocess.run([sys.executable, "-m", "ntkscope.cli.main", "check", "--help"],
                         capture_output=True, text=True, check=True, env=os.environ).stdout
    assert "95%" in out and "%%" not in out
