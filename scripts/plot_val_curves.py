"""Per-epoch curves of ``scripts/diagnose_training.py`` runs, one panel per metric.

    python scripts/plot_val_curves.py --out docs/figures/mtl-omniglot.png \\
        --title "Omniglot 5-way 1-shot, quick budget, seed 0" \\
        --epoch0 results/diagnosis/omniglot/epoch0.json \\
        --metrics val,head_rel_change \\
        results/diagnosis/omniglot/baseline.json="MTL (defaults)" \\
        results/diagnosis/omniglot/protonet.json=ProtoNet

Each positional argument is ``RESULT.json=LABEL``. ``--epoch0`` adds the untrained model's
validation accuracy at epoch 0 to every validation curve (the backbone's initialisation does
not depend on the method or its head, so it is the same for every run of a seed). Metrics are
keys of the per-epoch records: ``val``, ``train_loss``, ``head_rel_change``,
``head_row_norm_mean``, ``backbone_rel_change``, ``logit_scale``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from matplotlib.figure import Figure

LABELS = {
    "val": "validation accuracy (%, unified protocol)",
    "train_loss": "training loss (mean over the epoch)",
    "head_rel_change": "head matrix: ||W - W0|| / ||W0||",
    "head_row_norm_mean": "mean head row norm",
    "backbone_rel_change": "backbone: ||theta - theta0|| / ||theta0||",
    "logit_scale": "logit scale",
}
STYLES = ["-", "--", "-.", ":"]


def _run(spec: str) -> tuple[dict, str]:
    path, _, label = spec.partition("=")
    with open(path) as handle:
        return json.load(handle), label or Path(path).stem


def plot(runs: list[tuple[dict, str]], metrics: list[str], out: Path, title: str = "",
         epoch0: float | None = None) -> Path:
    figure = Figure(figsize=(4.2 * len(metrics), 3.4), dpi=90)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for k, (run, label) in enumerate(runs):
        style = dict(linestyle=STYLES[(k // 10) % len(STYLES)], marker="o", markersize=3,
                     color=f"C{k % 10}")
        for axis, metric in zip(axes, metrics):
            points = [(r["epoch"], r[metric]) for r in run["epochs"] if r.get(metric) is not None]
            if metric == "val" and epoch0 is not None:
                points = [(0, epoch0)] + points
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, label=label, **style)
    for axis, metric in zip(axes, metrics):
        axis.set_xlabel("epoch (50 optimiser steps each)")
        axis.set_ylabel(LABELS.get(metric, metric), fontsize=8)
        axis.grid(alpha=0.3)
        axis.tick_params(labelsize=8)
    axes[0].legend(fontsize=7, loc="best")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
    os.close(handle)
    try:
        figure.savefig(tmp, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RESULT.json=LABEL")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", default="val")
    parser.add_argument("--title", default="")
    parser.add_argument("--epoch0", type=Path, help="JSON of a --epoch0 run of the same seed")
    args = parser.parse_args(argv)
    epoch0 = json.loads(args.epoch0.read_text())["epoch0_val"] if args.epoch0 else None
    path = plot([_run(spec) for spec in args.runs], args.metrics.split(","), args.out,
                args.title, epoch0)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
