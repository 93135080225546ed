"""Model factories named on the command line: ``FILE.py:FACTORY`` or ``package.module:factory``.

A factory is a callable taking no arguments and returning an ``nn.Module``. Initialization
``i`` of a factory with seed ``s`` is ``torch.manual_seed(s + i); factory()`` (CONVENTIONS
section 9): :func:`init_model`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from ntkscope.validation import NtkscopeInputError, positive_int

__all__ = ["ModelFactory", "init_model", "load_factory"]

_FORM = "expected FILE.py:FACTORY or package.module:factory"


class ModelFactory:
    """A loaded factory: calling it calls the user's function and checks that the result is
    an ``nn.Module`` (any exception it raises becomes an :class:`NtkscopeInputError` naming
    the factory, chained to the original)."""

    def __init__(self, fn: Callable[[], object], spec: str) -> None:
        self.fn = fn
        self.spec = spec

    def __repr__(self) -> str:
        return f"ModelFactory({self.spec!r})"

    def __call__(self) -> nn.Module:
        try:
            model = self.fn()
        except NtkscopeInputError:
            raise
        except Exception as exc:
            raise NtkscopeInputError(
                f"model: {self.spec}() raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(model, nn.Module):
            raise NtkscopeInputError(
                f"model: {self.spec}() returned {type(model).__name__}, expected a "
                "torch.nn.Module"
            )
        return model


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise NtkscopeInputError(f"model: no such file: {path}")
    name = f"_ntkscope_model_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NtkscopeInputError(f"model: cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the file may import its neighbours
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise NtkscopeInputError(
            f"model: syntax error in {path}, line {exc.lineno}: {exc.msg}"
        ) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise NtkscopeInputError(
            f"model: running {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _load_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise NtkscopeInputError(f"model: no module named {name!r} ({_FORM})") from None
        raise NtkscopeInputError(f"model: importing {name} failed: {exc}") from exc
    except SyntaxError as exc:
        raise NtkscopeInputError(
            f"model: syntax error in {exc.filename}, line {exc.lineno}: {exc.msg}"
        ) from None
    except Exception as exc:
        raise NtkscopeInputError(
            f"model: importing {name} failed: {type(exc).__name__}: {exc}"
        ) from exc


def load_factory(spec: str) -> ModelFactory:
    """The factory named by ``spec``: ``FILE.py:FACTORY`` (a Python file, run as a fresh
    module with its folder on ``sys.path`` while it runs) or ``package.module:factory`` (an
    importable module; ``FACTORY`` may be dotted, ``module:Class.build``).

    Returns:
        a :class:`ModelFactory`; calling it returns the checked ``nn.Module``.

    Raises:
        NtkscopeInputError: a malformed spec; a missing file or module; a syntax error in it
            (the message gives the line, no traceback) or an exception while importing it; a
            missing attribute; an attribute that is not callable.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise NtkscopeInputError(f"model: {_FORM}, got {spec!r}")
    where, _, attr = spec.rpartition(":")
    if not where or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise NtkscopeInputError(f"model: {_FORM}, got {spec!r}")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(Path(where).expanduser())
    else:
        module = _load_module(where)
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise NtkscopeInputError(f"model: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise NtkscopeInputError(
            f"model: {spec} is a {type(obj).__name__}, not a callable returning an nn.Module"
        )
    return ModelFactory(obj, spec)


def init_model(factory: Callable[[], nn.Module], seed: int = 0, index: int = 0) -> nn.Module:
    """Initialization ``index`` of ``factory`` with seed ``seed``:
    ``torch.manual_seed(seed + index); factory()`` (CONVENTIONS section 9; "the model of seed
    ``s``" is ``index = 0``). Seeds torch's global generators, as the convention writes it.
    Nothing is called on the model (no ``.eval()``, no dtype or device change).
    """
    seed = positive_int("seed", seed, minimum=0)
    index = positive_int("index", index, minimum=0)
    torch.manual_seed(seed + index)
    model = factory()
    if not isinstance(model, nn.Module):
        raise NtkscopeInputError(
            f"model: the factory returned {type(model).__name__}, expected a torch.nn.Module"
        )
    return model
