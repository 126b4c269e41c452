"""Arrows point down only: ``core`` <- ``datasets`` <- ``methods`` <- ``bench``.

Each import runs in a fresh interpreter, so nothing another test imported can hide a
dependency."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_after(statement: str) -> set[str]:
    code = (f"import sys; {statement}; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.mark.parametrize("statement, forbidden", [
    ("import core, core.registry, core.atomic", {"bench", "methods", "datasets"}),
    ("import datasets", {"bench", "methods"}),
    ("import methods, datasets", {"bench"}),
])
def test_lower_layers_never_import_upper_ones(statement, forbidden):
    loaded = imported_after(statement)
    assert not loaded & forbidden, f"{statement!r} imported {sorted(loaded & forbidden)}"
