"""The paper's reported numbers (Wang, Zhao & Li, ICML 2021), shipped inside the package.

``paper.csv`` (table, method, backbone, dataset, ways, shots, metric, value, ci95, source, head:
one row per number the paper reports) is package data (``pyproject.toml``'s
``[tool.setuptools.package-data]``), so ``bench table`` finds it in an installed copy as well
as in the repository. Read through :data:`REFERENCE_CSV`, never a path relative to the
repository.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The files of this package that the code reads at run time (each must match a package-data
#: glob; ``tests/unit/test_packaging.py`` checks it).
DATA_FILES: tuple[str, ...] = ("paper.csv",)


def data_file(name: str) -> Path:
    """The path of one of :data:`DATA_FILES` in this package, wherever it is installed.

    ``ValueError`` for a name that is not one of them; ``RuntimeError`` when the package is
    not on the file system (a zipped install, which the harness does not support)."""
    if name not in DATA_FILES:
        raise ValueError(f"{name!r} is not a data file of {__name__}; known: "
                         f"{', '.join(DATA_FILES)}")
    resource = resources.files(__name__) / name
    if not isinstance(resource, Path):
        raise RuntimeError(f"{__name__} is not installed as files on disk ({resource!r}); "
                           "install bridgebench with pip into a regular environment")
    return resource


#: The paper's reported numbers, one row per reported figure.
REFERENCE_CSV: Path = data_file("paper.csv")
