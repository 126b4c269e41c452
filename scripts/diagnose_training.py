"""Train one run and record what happens inside it, epoch by epoch (docs/findings.md).

The same training loop, sampler, optimiser, selection and unified-protocol validation as
``python -m bench run`` (:class:`bench.run.session.TrainSession`), plus per-epoch diagnostics the
result files do not hold: mean training loss, learning rate, relative distance of the backbone
from its initialisation and, for a method with a per-class head matrix (``head_weights()``),
the head rows' mean norm and relative distance from initialisation and the logit scale.

Budget fields can be overridden with ``--set FIELD=VALUE`` (e.g. ``optimizer=adam``,
``meta_batch=8``); ``bench run`` has no such flag on purpose (budgets are named presets), so
these are experiments, not benchmark results. Test episodes are evaluated only when
``--test-episodes`` is positive (select on validation first).

    python scripts/diagnose_training.py --method mtl --dataset omniglot \\
        --data-root DIR --shots 1 --seed 0 --budget quick --hparam logit_scale=10 \\
        --out results/diagnosis/omniglot/mtl-scale10.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import session as bench_session  # noqa: E402
from bench.common.config import RunConfig, resolve_budget  # noqa: E402
from bench.run.train_and_test import evaluate_test_split  # noqa: E402
from bench.common.stats import episode_ci95  # noqa: E402
from bench.common.timing import SectionTimer  # noqa: E402
from bench.run.training import StepResult, build_training  # noqa: E402
from core.atomic import write_json_atomic  # noqa: E402
from core.budget import TrainBudget  # noqa: E402
from datasets import load_dataset  # noqa: E402
from methods import METHODS  # noqa: E402


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _pair(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), _value(raw.strip())


def build_config(args: argparse.Namespace) -> RunConfig:
    method = METHODS.canonical(args.method)
    budget = resolve_budget(args.budget, method, args.dataset, args.shots)
    fields = {f.name for f in dataclasses.fields(TrainBudget)} - {"name", "hparams"}
    sets = dict(args.set)
    unknown = sorted(set(sets) - fields)
    if unknown:
        raise SystemExit(f"error: unknown budget field(s) {unknown}; valid: {sorted(fields)}")
    hparams = {**budget.hparams, **dict(args.hparam)}
    METHODS.get(method).resolve_hparams(hparams)
    budget = dataclasses.replace(budget, **sets, hparams=hparams)
    return RunConfig(method=method, dataset=args.dataset, ways=args.ways, shots=args.shots,
                     seed=args.seed, budget=budget, queries=args.queries,
                     episodes=max(args.test_episodes, 1))


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


class DiagnosedSession(bench_session.TrainSession):
    """A :class:`bench.run.session.TrainSession` that records diagnostics after every epoch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self.backbone0 = _flat(self.method.backbone)
        self.head0 = self._head()
        self.started = time.perf_counter()

    def _head(self) -> torch.Tensor | None:
        weights = getattr(self.method, "head_weights", None)
        return weights().detach().clone() if weights is not None else None

    def _end_epoch(self, timer: SectionTimer, progress: bool) -> None:
        lr = self.optimizer.param_groups[0]["lr"]  # the rate the epoch trained with
        super()._end_epoch(timer, progress)
        backbone = _flat(self.method.backbone)
        record: dict[str, Any] = {
            "epoch": self.outcome.epochs,
            "val": self.outcome.val_curve[-1],
            "train_loss": float(np.mean(self.losses)) if self.losses else None,
            "lr": lr,
            "backbone_rel_change": float((backbone - self.backbone0).norm()
                                         / self.backbone0.norm()),
            "wall_seconds": time.perf_counter() - self.started,
        }
        head = self._head()
        if head is not None:
            record["head_row_norm_mean"] = float(head.norm(dim=1).mean())
            record["head_row_norm_init"] = float(self.head0.norm(dim=1).mean())
            record["head_rel_change"] = float((head - self.head0).norm() / self.head0.norm())
        scale = getattr(self.method, "logit_scale", None)
        if scale is not None:
            record["logit_scale"] = float(torch.as_tensor(scale).detach())
        self.records.append(record)
        self.losses.clear()
        print(json.dumps(record), flush=True)


def _test(method: torch.nn.Module, dataset: Any, config: RunConfig,
          device: torch.device) -> dict[str, Any]:
    """Unified-protocol test accuracy on the run's ``config.episodes`` test episodes (the same
    episodes ``bench run`` draws for this seed and episode count)."""
    results, digest = evaluate_test_split(method, dataset, config, device, progress=False)
    accs = results["unified"]["accuracies"]
    return {"episodes": len(accs), "mean": float(np.mean(accs)), "ci95": episode_ci95(accs),
            "episode_hash": digest, "accuracies": accs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--set", type=_pair, action="append", default=[], metavar="FIELD=VALUE",
                        help="override a budget field (repeatable)")
    parser.add_argument("--hparam", type=_pair, action="append", default=[],
                        metavar="KEY=VALUE", help="override a method hyperparameter")
    parser.add_argument("--epoch0", action="store_true",
                        help="only validate the untrained model (no training)")
    parser.add_argument("--test-episodes", type=int, default=0,
                        help="test episodes after training (0: no test)")
    parser.add_argument("--save-model", action="store_true",
                        help="also save the selected (best-validation) weights to OUT.pt")
    parser.add_argument("--test-only", type=Path, metavar="MODEL.pt",
                        help="no training: test weights saved by --save-model "
                             "(--test-episodes of them)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.test_only and args.test_episodes <= 0:
        parser.error("--test-only needs --test-episodes N (N > 0)")
    if args.out.exists():
        print(f"skip: {args.out} exists", file=sys.stderr)
        return 0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.dataset, args.data_root)
    config = build_config(args)
    device = torch.device("cpu")
    training = build_training(config, dataset, device)
    method = training.method
    recorded_losses: list[float] = []
    plain_step = bench_session.parallel_train_step

    def step(*a: Any, **k: Any) -> StepResult:
        result = plain_step(*a, **k)
        recorded_losses.append(result.loss)
        return result

    bench_session.parallel_train_step = step  # the session's step, recording each loss
    session = DiagnosedSession(training, dataset, config, device)
    session.losses = recorded_losses
    out: dict[str, Any] = {"config": config.to_dict(), "argv": sys.argv[1:],
                           "torch_threads": torch.get_num_threads()}
    if args.epoch0:
        out["epoch0_val"] = session.validate()
        print(f"epoch 0 val {out['epoch0_val']:.2f}%")
    elif args.test_only:
        method.load_state_dict(torch.load(args.test_only, map_location=device))
        out["model"] = str(args.test_only)
        out["test"] = _test(method, dataset, config, device)
        print(f"test {out['test']['mean']:.2f} +- {out['test']['ci95']:.2f}%")
    else:
        timer = SectionTimer(device)
        outcome = session.run(timer, progress=False)
        out.update({
            "val_curve": outcome.val_curve, "best_epoch": outcome.best_epoch,
            "best_val": outcome.best_val, "epochs": session.records,
            "train_seconds": timer.total("train") + timer.total("first_step"),
            "validation_seconds": timer.total("validation"),
        })
        method.load_state_dict(outcome.best_state)
        if args.save_model:
            torch.save(outcome.best_state, args.out.with_suffix(".pt"))
        if args.test_episodes > 0:
            out["test"] = _test(method, dataset, config, device)
    write_json_atomic(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
