"""Draw every figure bridgebench makes from the test fixtures, into one folder.

    python scripts/figure_gallery.py OUT

writes, into ``OUT``, every PNG that ``bench table`` writes for the fixture folders
``tests/fixtures/results`` (``results-figure2.png``, ``results-device_hours.png``),
``tests/fixtures/paired`` (``paired-learning_curves_*.png``, ``paired-device_hours.png``, ...)
and ``tests/fixtures/l2`` (``l2-l2_penalty.png``); ``narrow-learning_curves_data_5w5s.png``
from the curves of :func:`narrow_curves`; and ``theory-figure1.png``: ``bench theory``'s plot
of ``tests/fixtures/theory/summary.csv``. The pictures in ``docs/figures/`` were
made with it (``before/``: the code before issue 27; ``after/``: this code).

``tests/fixtures/theory/summary.csv`` is the ``summary.csv`` of a tiny theory sweep::

    python -m bench theory --out DIR --seeds 0 1 2 --depths 2 3 4 5 6 7 8 \\
        --lam-taus 0 0.25 0.5 --sweep-depth 4 --test-tasks 3 --no-validate --steps 50
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def narrow_curves() -> list[dict]:
    """Learning curves that span less than one 1-2-5 step of a log axis (GPU-hours) and a
    single point (CPU-hours): where matplotlib's log locator fell back to crowded linear
    ticks ("0.00070.00080.0009")."""
    def run(method: str, seed: int, hours: list[float], accuracy: list[float],
            unit: str) -> dict:
        curve = [{"epoch": i + 1, "train_seconds": h * 3600, "run_seconds": h * 3600,
                  "images_seen": 1000 * (i + 1), "steps": 10 * (i + 1), "val_accuracy": a}
                 for i, (h, a) in enumerate(zip(hours, accuracy))]
        return {"status": "ok", "key": f"{method}_seed{seed}",
                "config": {"method": method, "dataset": "data", "ways": 5, "shots": 5,
                           "seed": seed, "budget": {"name": "paper"}, "queries": 15,
                           "episodes": 1000},
                "provenance": {"device": "fixture " + unit, "device_count": 1},
                "timings": {"device_hours_unit": unit}, "learning_curve": curve}

    slow = [run("slow", s, [0.00031 * (1 + 0.02 * s), 0.00062 * (1 + 0.02 * s)], [50, 52],
                "GPU-hours") for s in (0, 1)]
    return slow + [run("fast", s, [0.0000186], [55], "CPU-hours") for s in (0, 1, 2)]


def gallery(out: Path) -> list[Path]:
    """Draw every figure into ``out``; return the paths written."""
    from bench.report.curve_plots import plot_learning_curves
    from bench.report.all_tables import make_tables
    from bench.theory.report import plot_figure

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("results", "paired", "l2"):
            folder = Path(scratch) / name
            make_tables(FIXTURES / name, folder, strict=False)
            for png in sorted(folder.glob("*.png")):
                written.append(Path(shutil.copy(png, out / f"{name}-{png.name}")))
    narrow = Path(tempfile.mkdtemp())
    for png in plot_learning_curves(narrow_curves(), narrow, targets=["slow"], clock="train"):
        written.append(Path(shutil.copy(png, out / f"narrow-{png.name}")))
    shutil.rmtree(narrow)
    summary = pd.read_csv(FIXTURES / "theory" / "summary.csv")
    plot_figure(summary, out / "theory-figure1.png")
    written.append(out / "theory-figure1.png")
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python scripts/figure_gallery.py OUT", file=sys.stderr)
        sys.exit(2)
    for path in gallery(Path(sys.argv[1])):
        print(path)
