"""A type checker run over user code sees every loss's signature and every loss class.

``jaxloss/__init__.pyi`` is generated (``python scripts/gen_stubs.py``); the
first test keeps it in sync with the registry (in the quick loop: it renders
the stub, no type checker runs). The other two run mypy (marked slow) over
``tests/typing/usage_ok.py`` (every line must pass) and
``tests/typing/usage_bad.py`` (exactly the lines marked ``# E:`` must be
reported).
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"

def _gen_stubs():
    spec = importlib.util.spec_from_file_location("gen_stubs", ROOT / "scripts" / "gen_stubs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stub_is_in_sync_with_the_registry():
    gen = _gen_stubs()
    assert gen.PATH.read_text() == gen.render(), "jaxloss/__init__.pyi is stale: run python scripts/gen_stubs.py"


def _mypy(path: pathlib.Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--disable-error-code", "import-untyped",
         "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    return [line for line in out.stdout.splitlines() if ": error:" in line]


@pytest.mark.slow  # a mypy run
def test_correct_usage_type_checks():
    assert _mypy(TYPING / "usage_ok.py") == []


@pytest.mark.slow  # a mypy run
def test_wrong_usage_is_reported_line_by_line():
    path = TYPING / "usage_bad.py"
    marked = {i for i, line in enumerate(path.read_text().splitlines(), 1) if "# E:" in line}
    reported = {int(re.match(r".*?:(\d+): error", line).group(1)) for line in _mypy(path)}
    assert reported == marked
    errors = "\n".join(_mypy(path))
    assert 'Unexpected keyword argument "dleta" for "HuberLoss"; did you mean "delta"?' in errors
    assert 'Unexpected keyword argument "dleta" for overloaded function "huber_loss"' in errors
