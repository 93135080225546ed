"""Helpers shared by the test modules, imported as ``helpers.*`` (``tests/`` is not a package,
so pytest's default import mode puts it on ``sys.path``). Their ``assert`` statements are
rewritten like those of the test modules, so failures show the compared values."""

import pytest

pytest.register_assert_rewrite("helpers.cli_fuzz")
