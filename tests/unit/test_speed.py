"""``bench speed``: the timing rule it applies, FLOP counting, the extrapolation arithmetic, the
JSON report, and the solver benchmark's bookkeeping. CPU only, small shapes, no timing
assertions."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

from bench.cost import speed, speed_report
from bench.common.config import resolve_budget
from bench.cost.solver_bench import agreement, run_bench, synthetic_episodes
from bench.common.timing import SectionTimer
from methods import METHODS


def _fake_timer(ticks: list[float], events: list[str]) -> SectionTimer:
    values = iter(ticks)

    def clock() -> float:
        events.append("clock")
        return next(values)

    def sync(device: torch.device) -> None:
        events.append("sync")

    return SectionTimer(torch.device("cpu"), clock=clock, sync=sync)


def test_time_steps_excludes_warmup_and_synchronises_before_every_read():
    events: list[str] = []
    # warm-up steps of 10 s and 5 s, then timed steps of 3, 1 and 2 s
    ticks = [0.0, 10.0, 10.0, 15.0, 15.0, 18.0, 18.0, 19.0, 19.0, 21.0]
    calls = []

    def step() -> int:
        calls.append(len(events))
        events.append("step")
        return 7

    timing = speed.time_steps(step, steps=3, warmup=2, timer=_fake_timer(ticks, events))
    assert len(calls) == 5
    # every step lies between two reads, each read synchronises first
    assert events == ["sync", "clock", "step", "sync", "clock"] * 5
    assert timing.warmup_seconds == [10.0, 5.0]
    assert timing.first_step == 10.0
    assert timing.seconds == [3.0, 1.0, 2.0]
    assert timing.median == 2.0
    assert timing.mean == pytest.approx(2.0)
    assert timing.images_per_second == pytest.approx(7 / 2.0)
    report = timing.to_dict()
    assert report["median_s"] == 2.0 and report["warmup_s"] == 15.0
    assert report["images_per_s_mean"] == pytest.approx(21 / 6.0)


def test_median_of_an_even_number_of_steps_is_the_middle_mean():
    events: list[str] = []
    ticks = [0.0, 4.0, 4.0, 5.0, 5.0, 8.0, 8.0, 10.0]  # no warm-up: 4, 1, 3, 2 s
    timing = speed.time_steps(lambda: 1, steps=4, warmup=0, timer=_fake_timer(ticks, events))
    assert timing.median == pytest.approx(2.5)
    assert timing.first_step is None


def test_compiled_warmup_goes_on_until_a_step_compiles_nothing():
    compiled = [0]
    calls = []

    def step() -> int:  # the first three calls compile a graph each, as recompiles would
        calls.append(1)
        if len(calls) <= 3:
            compiled[0] += 1
        return 1

    timer = SectionTimer("cpu")
    timing = speed.time_steps(step, steps=2, warmup=1, timer=timer, graphs=lambda: compiled[0])
    assert len(timing.warmup_seconds) == 4 and timing.to_dict()["warmup_steps"] == 4
    assert len(timing.seconds) == 2 and compiled[0] == 3  # nothing compiled while timed
    # even --warmup 0 runs one warm-up step when compiling; never more than the cap
    compiled[0], calls[:] = 0, []
    assert len(speed.time_steps(lambda: 1, 1, 0, timer, graphs=lambda: 0).warmup_seconds) == 1
    forever = speed.time_steps(step, 1, 0, timer, graphs=lambda: len(calls))
    assert len(forever.warmup_seconds) == speed.MAX_SETTLE_STEPS


def test_time_steps_rejects_bad_counts():
    timer = SectionTimer("cpu")
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        speed.time_steps(lambda: 1, steps=0, warmup=1, timer=timer)
    with pytest.raises(ValueError, match="--warmup"):
        speed.time_steps(lambda: 1, steps=1, warmup=-1, timer=timer)


def test_flop_counter_counts_a_matmul_exactly():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    assert speed.count_flops(lambda: a @ b) == 2 * 3 * 4 * 5


def test_budget_projection_assumes_epochs_only_for_early_stopping():
    mtl = resolve_budget("paper", "mtl", "mini", 5).to_dict()
    mon = resolve_budget("paper", "metaoptnet", "mini", 5).to_dict()
    p_mtl = speed_report.budget_projection({"budget": mtl, "step": {"median_s": 0.5}}, 40)
    assert p_mtl["epochs_assumed"] and p_mtl["epochs"] == 40
    assert p_mtl["total_steps"] == 40 * 800  # 1600 tasks per epoch, meta-batch 2
    assert p_mtl["device_hours"] == pytest.approx(0.5 * 40 * 800 / 3600)
    p_mon = speed_report.budget_projection({"budget": mon, "step": {"median_s": 2.0}}, 40)
    assert not p_mon["epochs_assumed"] and p_mon["total_steps"] == 60 * 1000
    capped = speed_report.budget_projection({"budget": mtl, "step": {"median_s": 1.0}}, 5000)
    assert capped["epochs"] == mtl["epochs"]  # never beyond the budget's maximum
    assert p_mtl["run_device_hours"] is None  # validation not timed: no run figure


def test_run_device_hours_add_each_epochs_validation():
    mtl = resolve_budget("paper", "mtl", "mini", 5).to_dict()  # 400 validation episodes
    entry = {"budget": mtl, "step": {"median_s": 0.5},
             "validation": {"seconds_per_episode": 0.02}}
    p = speed_report.budget_projection(entry, 40)
    assert p["validation_epoch_seconds"] == pytest.approx(0.02 * 400)
    assert p["train_device_hours"] == p["device_hours"] == pytest.approx(0.5 * 40 * 800 / 3600)
    assert p["run_device_hours"] == pytest.approx((0.5 * 800 + 0.02 * 400) * 40 / 3600)


def _csv(tmp_path: Path, mtl_hours: float, reference_hours: float) -> Path:
    path = tmp_path / "paper.csv"
    path.write_text("table,method,backbone,dataset,ways,shots,metric,value,ci95,source\n"
                    f"4,MetaOptNet,resnet12,mini-imagenet,5,5,gpu_hours,{reference_hours},,T4\n"
                    f"4,MTL,resnet12,mini-imagenet,5,5,gpu_hours,{mtl_hours},,T4\n")
    return path


def test_extrapolation_ratios_by_hand(tmp_path):
    mtl = resolve_budget("paper", "mtl", "mini", 5).to_dict()
    mon = resolve_budget("paper", "metaoptnet", "mini", 5).to_dict()
    entries = []
    for name, budget, step_s, images in (("mtl", mtl, 0.1, 100), ("metaoptnet", mon, 1.2, 840)):
        entry = {"method": name, "display_name": METHODS.get(name).display_name,
                 "budget": budget, "step": {"median_s": step_s, "images_per_s": images / step_s}}
        entry["paper_budget"] = speed_report.budget_projection(entry, 50)
        entries.append(entry)
    ext = speed_report.extrapolate(entries, 50, _csv(tmp_path, 4.0, 80.0))
    assert ext["reference"] == "metaoptnet" and list(ext["methods"]) == ["mtl"]
    row = ext["methods"]["mtl"]
    assert row["per_step"] == pytest.approx(12.0)
    assert row["per_image"] == pytest.approx((100 / 0.1) / (840 / 1.2))
    assert row["per_epoch"] == pytest.approx(1.2 * 1000 / (0.1 * 800))
    assert row["full_budget"] == pytest.approx(1.2 * 60_000 / (0.1 * 50 * 800))
    assert row["paper"]["ratio"] == pytest.approx(20.0)
    # MTL epochs e with 1.2 * 60000 / (0.1 * 800 * e) == 20
    assert row["epochs_for_paper_ratio"] == pytest.approx(1.2 * 60_000 / (20 * 0.1 * 800))
    assert row["epochs"] == 50 and row["epochs_assumed"]
    assert ext["reference_epochs"] == 60 and not ext["reference_epochs_assumed"]
    assert speed_report.extrapolate(entries[:1], 50, None) is None  # no reference measured
    assert speed_report.extrapolate(entries[1:], 50, None) is None  # nothing to compare with it


def test_paper_ratio_is_table4():
    ref = speed_report.paper_ratio("MTL", "MetaOptNet")
    assert ref["ratio"] == pytest.approx(85.6 / 3.7)
    assert speed_report.paper_ratio("ProtoNet", "MetaOptNet") is None


def test_device_slug_and_report_path():
    assert speed_report.device_slug("NVIDIA H200") == "nvidia-h200"
    assert speed_report.device_slug("cpu (Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz)") == \
        "cpu-intel-xeon-gold-6230-cpu-2.10ghz"
    path = speed_report.report_path(Path("out"), "NVIDIA H100 80GB HBM3", "bf16", 84,
                                    compiled=True, dataset="mini", ways=5, shots=1)
    assert path == Path("out/nvidia-h100-80gb-hbm3-bf16-84-mini-5w1s-compile.json")
    other_shots = speed_report.report_path(Path("out"), "NVIDIA H100 80GB HBM3", "bf16", 84,
                                           compiled=True, dataset="mini", ways=5, shots=5)
    assert other_shots != path  # one report per shot count: bench plan needs both


def test_synthetic_dataset_has_the_requested_shape():
    ds = speed.synthetic_dataset("mini", 20, 3, n_train_classes=7, per_class=4)
    assert tuple(ds.train.images.shape) == (28, 3, 20, 20)
    assert ds.train.images.dtype == torch.uint8
    assert ds.train.n_classes == 7 and ds.train.class_sizes() == [4] * 7
    assert ds.channels == 3 and ds.image_size == 20


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    speed.add_arguments(parser)
    return parser.parse_args(["--methods", "mtl,metaoptnet", "--dataset", "glyphs",
                              "--backbone", "conv4-32", "--meta-batch", "2", "--steps", "2",
                              "--warmup", "1", "--device", "cpu", "--out", str(tmp_path),
                              *extra])


def test_speed_report_schema_on_cpu(tmp_path, capsys):
    torch.manual_seed(0)
    assert speed.run(_args(tmp_path)) == 0
    files = list(tmp_path.iterdir())
    assert len(files) == 1, files  # the atomic write leaves no temporary file behind
    report = json.loads(files[0].read_text())
    assert files[0].name.endswith(f"-fp32-28-glyphs-5w{report['shots']}s.json")
    assert files[0].name.startswith("cpu")
    assert report["schema"] == speed.SPEED_SCHEMA
    assert report["device"].startswith("cpu") and report["device_type"] == "cpu"
    assert report["torch"] == torch.__version__
    assert (report["precision"], report["image_size"], report["channels"]) == ("fp32", 28, 1)
    assert report["steps"] == 2 and report["warmup"] == 1
    assert report["budget_overrides"] == {"meta_batch": 2, "backbone": "conv4-32"}
    assert "synchronised" in report["timing_rule"]

    by_method = {e["method"]: e for e in report["methods"]}
    assert set(by_method) == {"mtl", "metaoptnet"}
    for name, entry in by_method.items():
        assert "error" not in entry, entry.get("traceback")
        budget = resolve_budget("paper", name, "glyphs", 5)
        per_task = 5 * (budget.train_shots + budget.train_queries)
        assert entry["images_per_task"] == per_task and entry["meta_batch"] == 2
        step, bare = entry["step"], entry["backbone_step"]
        for part in (step, bare):
            assert part["images_per_step"] == 2 * per_task
            assert len(part["times_s"]) == 2 and part["first_step_s"] > 0
            assert part["median_s"] > 0 and part["images_per_s"] > 0
            assert part["peak_memory_bytes"] is None  # CPU: not measured, documented
            assert part["tflops_per_s"] == pytest.approx(
                part["flops_per_step"] / part["median_s"] / 1e12)
        assert 0 < bare["flops_per_step"] <= step["flops_per_step"]
        assert entry["throughput_ratio"] == pytest.approx(
            step["images_per_s"] / bare["images_per_s"])
        assert entry["paper_budget"]["device_hours"] > 0
        validation = entry["validation"]
        assert validation["episodes_timed"] == 10 and validation["protocol"] == "unified"
        assert validation["seconds_per_episode"] > 0
        assert entry["paper_budget"]["run_device_hours"] > entry["paper_budget"]["device_hours"]
    assert by_method["mtl"]["paper_budget"]["epochs_assumed"]
    assert not by_method["metaoptnet"]["paper_budget"]["epochs_assumed"]
    ext = report["extrapolation"]
    assert ext["methods"]["mtl"]["per_step"] == pytest.approx(
        by_method["metaoptnet"]["step"]["median_s"] / by_method["mtl"]["step"]["median_s"])
    assert ext["methods"]["mtl"]["paper"]["ratio"] == pytest.approx(85.6 / 3.7)
    assert ext["overrides"] == {"meta_batch": 2, "backbone": "conv4-32"}
    mtl_p, mon_p = (by_method[m]["paper_budget"] for m in ("mtl", "metaoptnet"))
    assert ext["methods"]["mtl"]["full_budget_run"] == pytest.approx(
        mon_p["run_device_hours"] / mtl_p["run_device_hours"])
    assert ext["methods"]["mtl"]["epochs_for_paper_ratio_run"] > 0
    printed = capsys.readouterr().out
    assert "run (with validation)" in printed and "budget h (run)" in printed
    assert "metaoptnet" in printed and "MetaOptNet / MTL device-hours" in printed
    assert "paper: 23.1x" in printed
    assert "not the paper budgets' ratio" in printed


def test_a_failing_method_costs_its_row_not_the_run(tmp_path, monkeypatch, capsys):
    real = speed.measure_method

    def flaky(config, *args, **kwargs):
        if config.method == "metaoptnet":
            raise RuntimeError("out of\nmemory")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(speed, "measure_method", flaky)
    args = _args(tmp_path, "--steps", "1")
    assert speed.run(args) == 1
    report = json.loads(next(tmp_path.iterdir()).read_text())
    by_method = {e["method"]: e for e in report["methods"]}
    assert by_method["metaoptnet"]["error"] == "RuntimeError: out of memory"
    assert "step" in by_method["mtl"]
    assert report["extrapolation"] is None
    assert "1 method(s) failed: metaoptnet" in capsys.readouterr().err


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="--meta-batch must be at least 1"):
        speed.measure_all(_args(tmp_path, "--meta-batch", "0"), torch.device("cpu"))


def test_synthetic_solver_episodes_are_normalised_and_labelled():
    s, sl, q, ql = synthetic_episodes(3, 5, 2, 4, 16, noise=1.0, seed=1)
    assert s.shape == (3, 10, 16) and q.shape == (3, 20, 16)
    assert torch.allclose(s.norm(dim=-1), torch.ones(3, 10))
    assert sl[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert (s >= 0).all() and ql.shape == (3, 20)


def test_solver_agreement_arithmetic():
    labels = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    a = torch.tensor([[0, 1, 2, 0], [0, 1, 0, 0]])  # 75%, 50%
    b = torch.tensor([[0, 1, 0, 3], [0, 1, 0, 1]])  # 75%, 50%, other queries differ
    out = agreement(a, b, labels)
    assert out["episodes_equal_accuracy"] == 1.0
    assert out["mean_accuracy_batched"] == pytest.approx(62.5)
    assert out["mean_accuracy_difference_points"] == 0.0
    assert out["queries_equal_prediction"] == pytest.approx(5 / 8)


def test_solver_bench_runs_both_solvers_on_the_same_episodes():
    report = run_bench(6, 5, 2, 3, 32, noise=1.0, device=torch.device("cpu"), jobs=1,
                       dtype=torch.float64)
    assert report["episodes"] == 6 and report["batched_warmup_episodes"] == 6
    assert report["batched_seconds"] > 0 and report["sklearn_seconds"] > 0
    assert report["speedup"] == pytest.approx(report["sklearn_seconds"]
                                              / report["batched_seconds"])
    assert 0.0 <= report["episodes_equal_accuracy"] <= 1.0
    assert not math.isnan(report["mean_accuracy_batched"])


def test_compiled_run_reports_recompilation_during_timed_steps(tmp_path, monkeypatch):
    """--compile goes through Module.compile; dynamo's eager backend keeps this fast on a CPU.
    Conv4 has no step-dependent state, so nothing is compiled during the timed steps."""
    original = torch.nn.Module.compile

    def eager_compile(self, *args, **kwargs):
        return original(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    args = _args(tmp_path, "--methods", "protonet", "--compile", "--steps", "2")
    assert speed.run(args) == 0
    path = next(tmp_path.iterdir())
    assert path.name.endswith("-fp32-28-glyphs-5w5s-compile.json")
    report = json.loads(path.read_text())
    assert report["compile"] is True
    for part in ("step", "backbone_step"):
        info = report["methods"][0][part]["compile"]
        assert info["graphs_compiled_while_timed"] == 0, part
        assert info["graphs_compiled_total"] >= 1
