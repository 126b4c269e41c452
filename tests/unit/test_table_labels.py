"""What the tables say about what they hold (issue 27, item 2): a non-standard split named
next to its dataset; a recorded method whose class is unavailable kept in one row under its
name and said so once; every file written listed; the brief's cost convention named; and
``bench plan`` saying when it saves no plan and marking finished runs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import bench.cost.plan as plan_module
from bench.commands.main import main
from bench.common.data_split import dataset_label, split_label
from bench.store.plan_file import read_plan
from bench.store.results import SCHEMA, read_result
from bench.report.summary import brief_summary

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPEED = FIXTURES / "speed"
SWEEP = ["--methods", "mtl,maml", "--dataset", "glyphs", "--shots", "1", "--budget", "quick",
         "--device", "cpu", "--speed-reports", str(SPEED)]
SUBSET = ("generated: glyphs seed=0 size=28 classes 20/8/10 x 8 images")
OMNIGLOT_242 = ("omniglot from /data/omniglot/; 242 characters after de-duplication; split "
                "164/15/63: learn2learn's 1100/100/423 proportions scaled to 242 classes (not "
                "the full 1623), seed 0")


def _current(result: dict, **changes) -> dict:
    """A fixture result (schema /1, migrated on read) as a current-schema file would hold it."""
    data = {k: v for k, v in result.items() if k != "migrated_from"}
    data["schema"] = SCHEMA
    data.update(changes)
    return data


def _write(folder: Path, result: dict) -> None:
    (folder / "runs" / f"{result['key']}.json").write_text(json.dumps(result))


@pytest.mark.parametrize("dataset,source,label", [
    ("omniglot", OMNIGLOT_242, "242-class subset"),
    ("omniglot", "Omniglot from the prepared cache /c (of folders in /d); NON-STANDARD split: "
                 "1200/200/223 classes (train/val/test) instead of the standard 1100/100/423",
     "1200/200/223-class split"),
    ("omniglot", "omniglot from /d; 1623 characters; split 1100/100/423 (learn2learn's sizes)",
     ""),
    ("glyphs", "generated: glyphs seed=0 size=28 classes 256/64/128 x 20 images", ""),
    ("glyphs", SUBSET, "38-class subset"),
    ("mini", "Mini-ImageNet read directly from csv in /m; NON-STANDARD split: a class in two "
             "splits", "non-standard split"),
])
def test_split_label_reads_what_the_result_records(dataset, source, label):
    result = {"config": {"dataset": dataset}, "data": {"source": source}}
    assert split_label(result) == label
    assert dataset_label(dataset, label) == (f"{dataset} ({label})" if label else dataset)
    assert split_label({"config": {"dataset": dataset}, "data": None}) == ""  # schema /1


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory) -> Path:
    """The fixture results, one more MTL run on a 38-class glyphs subset, and the MTL runs of
    both shot counts recorded as a plugin method whose module is gone."""
    folder = tmp_path_factory.mktemp("labels") / "results"
    shutil.copytree(FIXTURES / "results", folder)
    runs = folder / "runs"
    base = read_result(runs / "mtl_glyphs_5w1s_quick_seed0.json")
    _write(folder, _current(base, key="mtl_glyphs_5w1s_quick_seed7",
                            config={**base["config"], "seed": 7},
                            data={"name": "glyphs", "source": SUBSET, "fingerprint": "f" * 64}))
    for path in sorted(runs.glob("mtl_glyphs_5w*s_quick_seed[0-2].json")):
        result = read_result(path)
        config = {**result["config"], "method": "gone",
                  "method_source": "no_such_package.methods:Gone"}
        _write(folder, _current(result, key=result["key"].replace("mtl", "gone"),
                                config=config))
    (folder / "out").mkdir()
    (folder / "out" / "l2_penalty.csv").write_text("stale")  # not written by this table
    return folder


def test_table_names_the_subset_keeps_an_unavailable_method_together_and_lists_its_files(
        labelled_folder, capsys):
    out = labelled_folder / "out"
    assert main(["table", str(labelled_folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    header = printed.splitlines()[2]
    assert "glyphs (38-class subset) 5-way 1-shot" in header and "glyphs 5-way 1-shot" in header
    gone = [line for line in printed.split("## Training cost")[0].splitlines()
            if line.startswith("| gone |")]
    assert len(gone) == 1 and "settings " not in gone[0], gone  # 1- and 5-shot in one row
    assert printed.count("Not available here: gone (no_such_package.methods:Gone)") == 1
    written = printed.strip().splitlines()[-1]
    assert written.startswith(f"(written to {out}: ")
    for name in ("accuracy.csv", "efficiency.md", "comparison.md", "time_to_accuracy.csv",
                 "figure2.png", "device_hours.png"):
        assert name in written, name
    assert "l2_penalty" not in written  # there before, not written now


def test_brief_names_the_subset_and_says_which_cost_convention(labelled_folder):
    written = [labelled_folder / "out" / "figure2.png"]
    text = brief_summary(labelled_folder, written=written)
    assert "== glyphs (38-class subset), 5-way, quick budget" in text
    assert "the method's hours / MTL's" in text
    assert "efficiency.md's speed-ups run the other way: MetaOptNet's hours / the row's" in text
    assert text.count("Not available here: gone") == 1
    assert text.strip().splitlines()[-1] == f"Written: {written[0]}"


@pytest.fixture
def fixture_device(monkeypatch):
    monkeypatch.setattr(plan_module, "device_target", lambda device: ("cpu", "fixture cpu"))


def test_plan_marks_finished_runs_and_leaves_them_out(tmp_path, capsys, fixture_device):
    from bench.commands.main import build_parser
    from bench.commands.run_sweep import build_configs
    from methods.plugins import resolve_method

    out = tmp_path / "out"
    args = build_parser().parse_args(["run", *SWEEP, "--out", str(out)])
    configs, _ = build_configs(args, [resolve_method(m) for m in args.methods], ["glyphs"],
                                {})
    mtl = next(c for c in configs if c.method == "mtl")
    (out / "runs").mkdir(parents=True)
    body = read_result(FIXTURES / "results" / "runs" / "mtl_glyphs_5w1s_quick_seed0.json")
    _write(out, _current(body, key=mtl.key, config=mtl.to_dict()))
    assert main(["run", *SWEEP, "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"| {mtl.key} (finished) |" in printed
    assert "1 of 2 runs are finished already (marked): `bench run` skips them" in printed
    assert "Total over 1 of 1 runs to run with a speed report: 0.3 training" in printed
    assert main(["plan", *SWEEP, "--out", str(out)]) == 0
    assert sorted(read_plan(out)) == ["maml_glyphs_5w1s_quick_seed0"]  # not the finished one
    assert main(["plan", *SWEEP, "--out", str(out), "--force"]) == 0
    assert "Total over 2 of 2 runs with a speed report: 0.4" in capsys.readouterr().out
    assert sorted(read_plan(out)) == ["maml_glyphs_5w1s_quick_seed0", mtl.key]


def test_plan_says_when_it_saves_nothing_or_cannot_save(tmp_path, capsys, fixture_device):
    assert main(["plan", *SWEEP[:-2], "--speed-reports", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out")]) == 0
    assert re.search(r"no plan saved in .*plan\.json: no run still to do has a matching speed "
                     r"report", capsys.readouterr().out)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["plan", *SWEEP, "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the plan could not be saved to ")
