"""Machinery of the command-line fuzz tests (``tests/test_properties.py``).

:class:`CliFuzz` draws random argument lists with Hypothesis (mostly valid values, plus every
kind of bad one), runs ``ntkscope`` in-process and checks the command-line contract: exit code
0 or 2, never a traceback; on exit 2 exactly one ``error:`` line (the last one) and no new
output file; valid JSON without NaN on success; no ``*.tmp`` debris. Its :meth:`CliFuzz.test`
decorator makes sure that the examples of one test reached both outcomes for every command.

The state of a run (is the current argument list "clean", the exit codes seen by the running
fuzz test) lives in the :class:`CliFuzz` instance, not in module globals.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from ntkscope.cli.main import main

# Value pools: mostly valid, plus every kind of bad value.
NUM_BAD = ("nan", "inf", "-inf", "-1", "0", "1e308", "-1e308", "1e-320", "abc", "", "1e999",
           "0x10", "1_0")
INT_BAD = ("0", "-1", "abc", "1.5", "nan", "", "1e3", "99999999999999999999")
#: Options that take no value (never joined as ``--opt=value``).
FLAGS = frozenset({"--json", "--quiet", "--retry-failed", "--help"})


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``ntkscope argv`` in this process: (exit code, stdout, stderr); exceptions propagate."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors (2), --help / --version (0)
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _no_nan(text: str) -> float:
    raise AssertionError(f"non-finite number {text} in JSON output")


class CliFuzz:
    """Random ``ntkscope`` command lines and the checks of their outcome.

    Attributes:
        clean: set by :meth:`build_argv` for a "clean" argument list (until the next one is
            checked by :meth:`check_outcome`): every :meth:`mostly` strategy then draws a
            valid value.
        good: the :meth:`mostly` strategies (weakly held: a strategy's id may be reused once
            it is gone).
        outcomes: exit codes per subcommand of the running :meth:`test` (``None`` when no
            fuzz test is running).
    """

    def __init__(self) -> None:
        self.clean = False
        self.good: weakref.WeakSet[st.SearchStrategy[str]] = weakref.WeakSet()
        self.outcomes: dict[str, list[int]] | None = None

    # -- strategies ----------------------------------------------------------------------------

    def mostly(self, good: st.SearchStrategy[str], bad: tuple[str, ...]
               ) -> st.SearchStrategy[str]:
        """A valid value 6 times in 7, else a bad one (so many argument lists are fully valid)."""
        strat = st.integers(0, 6).flatmap(
            lambda k: st.sampled_from(bad) if k == 6 and not self.clean else good
        )
        self.good.add(strat)
        return strat

    def num(self, lo: float, hi: float) -> st.SearchStrategy[str]:
        """A float in ``[lo, hi]`` as ``repr`` text, or a bad number (:data:`NUM_BAD`)."""
        return self.mostly(st.floats(lo, hi).map(repr), NUM_BAD)

    def small_int(self, lo: int = 1, hi: int = 3, bad: tuple[str, ...] = INT_BAD[:-1]
                  ) -> st.SearchStrategy[str]:
        """An integer in ``[lo, hi]`` as text, or one of ``bad``."""
        return self.mostly(st.integers(lo, hi).map(str), bad)

    def build_argv(self, data: st.DataObject, command: list[str],
                   required: dict[str, st.SearchStrategy[str]],
                   optional: dict[str, st.SearchStrategy[str] | None],
                   positional: Sequence[st.SearchStrategy[str]] = ()) -> list[str]:
        """``command`` + each required option (rarely dropped) + a random subset of the
        optional ones (``None`` strategy: a flag); sometimes an unknown option.

        One list in four is "clean": nothing dropped, no unknown option, valid values only,
        and only the optional options whose values are all valid (flags and :meth:`mostly`
        strategies), so that every command also reaches success often (values may still
        clash, e.g. MNIST with a small input dimension)."""
        self.clean = clean = data.draw(st.integers(0, 3), label="clean") == 0
        argv = list(command)
        for strat in positional:
            if clean or data.draw(st.integers(0, 19), label="drop positional") > 0:
                argv.append(data.draw(strat))
        for opt, strat in required.items():
            if clean or data.draw(st.integers(0, 24), label=f"drop {opt}") > 0:
                argv += [opt, data.draw(strat, label=opt)]
        for opt, maybe in optional.items():
            if clean and maybe is not None and maybe not in self.good:
                continue
            if data.draw(st.booleans(), label=f"use {opt}"):
                argv += [opt] if maybe is None else [opt, data.draw(maybe, label=opt)]
        if not clean and data.draw(st.integers(0, 29), label="unknown option") == 0:
            argv.append("--no-such-option")
        # ``--opt=value`` spelling keeps values such as "-1" from looking like options
        joined: list[str] = []
        i = 0
        while i < len(argv):
            if argv[i].startswith("--") and i + 1 < len(argv) \
                    and not argv[i + 1].startswith("--") and argv[i] not in FLAGS:
                joined.append(f"{argv[i]}={argv[i + 1]}")
                i += 2
            else:
                joined.append(argv[i])
                i += 1
        return joined

    # -- running and checking --------------------------------------------------------------------

    def check_outcome(self, argv: list[str], workdir: Path, outputs: tuple[str, ...] = ()
                      ) -> int:
        """Run ``argv`` in ``workdir`` and check the command-line contract; returns the code."""
        before = {p: p.exists() for p in (workdir / o for o in outputs)}
        with _cwd(workdir):
            code, out, err = run_cli(argv)
        assert "Traceback" not in err and "Traceback" not in out, (argv, err)
        assert code in (0, 2), (argv, code, err)
        if code == 2:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            # Informational lines may precede the error: a note that the shipped data subset
            # is used, and the download log's per-mirror failures. The error is one line, the
            # last.
            errors = [ln for ln in lines if ": note: " not in ln and not ln.startswith("failed: ")]
            assert len(errors) == 1 and errors[0] == lines[-1], (argv, err)
            assert ": error: " in errors[0], (argv, err)
            for path, existed in before.items():  # a failed command writes no new output file
                if not existed:
                    assert not path.exists(), (argv, path)
        elif "--json" in argv and "--help" not in argv:
            json.loads(out, parse_constant=_no_nan)
        debris = [p for p in workdir.rglob("*.tmp")]
        assert not debris, (argv, debris)
        self.clean = False
        if self.outcomes is not None:
            self.outcomes.setdefault(argv[0], []).append(code)
        return code

    def test(self, *commands: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator of a CLI fuzz test: once all its examples ran, each of ``commands``
        (default: the ``command`` argument of a parametrized test) must have both succeeded
        (exit 0) and refused bad input (exit 2) at least once, so the random argument lists
        really reach both outcomes."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> None:
                self.outcomes = {}
                try:
                    fn(*args, **kwargs)
                    seen = self.outcomes
                finally:
                    self.outcomes = None
                for command in commands or (kwargs["command"],):
                    codes = seen.get(command, [])
                    assert 0 in codes and 2 in codes, (command, codes.count(0), codes.count(2))

            return wrapper

        return decorate
