"""An installed copy (``pip install .``) has every file the code reads at run time: the paper's
reported numbers load through the package (``importlib.resources``), not through a path
relative to the repository, and every data file inside a package is declared as package data
in ``pyproject.toml``. Cheap: no wheel is built (the README's install check does that)."""
from __future__ import annotations

import glob
import inspect
import re
import tomllib
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

import bench.reference
from bench.reference import DATA_FILES, REFERENCE_CSV, data_file

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
#: Files inside a package that no code reads: each says who uses it instead.
NOT_READ_AT_RUN_TIME = {
    "bench/gpu_check.sh": "a script a person runs on a GPU machine (docs/performance.md)",
}


def _package_dirs() -> list[Path]:
    """The top-level package folders that ``packages.find`` includes ("bench*" -> bench)."""
    tops = {pattern.rstrip("*") for pattern in PACKAGES}
    return [REPO / top for top in sorted(tops) if (REPO / top / "__init__.py").exists()]


def _data_files() -> set[str]:
    """Every file under the packages that is not Python (repository-relative, POSIX)."""
    found = set()
    for top in _package_dirs():
        for path in top.rglob("*"):
            if path.is_file() and path.suffix not in {".py", ".pyc"} \
                    and "__pycache__" not in path.parts:
                found.add(path.relative_to(REPO).as_posix())
    return found


def _declared() -> set[str]:
    """The files that ``[tool.setuptools.package-data]`` puts into a wheel, globbed as
    setuptools does: each pattern relative to its package's folder."""
    declared = set()
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        folder = REPO.joinpath(*package.split("."))
        for pattern in patterns:
            declared |= {Path(p).relative_to(REPO).as_posix()
                         for p in glob.glob(str(folder / pattern), recursive=True)}
    return declared


def test_the_reference_rows_load_through_the_package():
    package_dir = Path(inspect.getfile(bench.reference)).parent
    assert REFERENCE_CSV == resources.files("bench.reference") / "paper.csv"
    assert REFERENCE_CSV.parent == package_dir and REFERENCE_CSV.is_file()
    rows = pd.read_csv(REFERENCE_CSV, dtype={"table": str})
    assert {"table", "method", "dataset", "value", "source"} <= set(rows.columns)
    assert {"3", "4", "5"} <= set(rows["table"])  # accuracy, cost and L2-penalty rows
    with pytest.raises(ValueError, match="not a data file"):
        data_file("nosuch.csv")


def test_every_reader_of_the_reference_rows_defaults_to_the_packaged_file():
    from bench.report.l2_table import build_l2_table, make_l2_table, reported_rows
    from bench.report.efficiency_plots import paper_points
    from bench.cost.speed_report import paper_ratio
    from bench.report.table import main_tables, reference_rows
    from bench.report.all_tables import build_tables, make_tables

    for function in (make_l2_table, build_l2_table, reported_rows, paper_points, paper_ratio,
                     make_tables, build_tables, main_tables, reference_rows):
        default = inspect.signature(function).parameters["reference_csv"].default
        assert default == REFERENCE_CSV, function.__qualname__


def test_no_module_reads_a_file_relative_to_the_repository():
    # the old `Path(__file__).resolve().parents[1] / "results" / ...` breaks in an install
    joined = re.compile(r"parents\[\d+\]\s*/")
    offenders = [path.relative_to(REPO).as_posix() for top in _package_dirs()
                 for path in top.rglob("*.py") if joined.search(path.read_text())]
    assert offenders == []


def test_every_data_file_in_a_package_is_declared_package_data():
    data, declared = _data_files(), _declared()
    assert {f"bench/reference/{name}" for name in DATA_FILES} <= declared
    assert "datasets/splits/cifarfs_train.txt" in declared  # the globs do match files
    missing = data - declared - set(NOT_READ_AT_RUN_TIME)
    assert not missing, f"declare these in pyproject's package-data (or list them as not " \
                        f"read at run time): {sorted(missing)}"
    assert set(NOT_READ_AT_RUN_TIME) <= data  # no stale exemption
