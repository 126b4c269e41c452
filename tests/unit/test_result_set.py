"""A results folder is read once, as data (issue 23): :mod:`bench.store.result_set` finds and
reads every run, eval and tuned file into one set, whatever the files hold; ``bench table``
and ``--brief`` build every table once from it, and a failed write rebuilds nothing."""
import errno
import json
import shutil
from pathlib import Path

import pytest

import bench.report.all_tables as all_tables
import bench.report.summary as summary
import bench.report.table as table
import bench.store.result_set as result_set
from bench.commands.main import main
from bench.store.eval_files import EvalFileError
from bench.store.result_set import EVALS, RESULTS, TUNED, load_result_set
from bench.store.results import ResultFileError
from bench.store.tuned_files import TunedError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def tuned(**change) -> str:
    study = {"schema": "bridgebench.tuned/1", "method": "mtl", "dataset": "glyphs", "ways": 5,
             "shots": 1, "budget": "quick", "study": {"name": "s", "complete": 3, "pruned": 1},
             "best": {"settings": {}, "hparams": {}}, "cost": {"cpu_hours": 0.5}}
    return json.dumps({**study, **change})


@pytest.fixture
def folder(tmp_path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", copy)
    (copy / "runs" / "broken.json").write_text("{oops")
    (copy / "evals").mkdir()
    (copy / "evals" / "bad.json").write_text("[]")
    (copy / "tuned").mkdir()
    (copy / "tuned" / "a_good.json").write_text(tuned())
    (copy / "tuned" / "b_cost.json").write_text(tuned(cost=[]))  # a crash before
    (copy / "plans").mkdir()
    (copy / "plans" / "plan.json").write_text(json.dumps({"runs": {
        "ok": {"epochs": 2, "train_device_hours": 0.1, "run_device_hours": None},
        "text": {"epochs": 2, "train_device_hours": "0.1"}, "list": [1]}}))
    return copy


def test_every_file_is_read_once_into_one_set_and_none_raises(folder):
    found = load_result_set(folder)
    assert len(found.results) == len(list((FIXTURES / "results" / "runs").glob("*.json")))
    assert [s.kind for s in found.skipped] == [RESULTS, EVALS, TUNED]  # each in its place
    lines = found.skipped_lines()
    assert "broken.json: not valid JSON" in lines[0] and "bad.json" in lines[1]
    assert lines[2].startswith(f"{folder / 'tuned' / 'b_cost.json'}: ")
    assert "cost.cpu_hours must be" in lines[2]
    [study] = found.tuned
    assert (study.best.method, study.budget, study.trials, study.cpu_hours) == \
        ("mtl", "quick", 4, 0.5)
    assert list(found.plan) == ["ok"]  # malformed plan entries are left out, not a crash
    for kind, error in ((RESULTS, ResultFileError), (EVALS, EvalFileError),
                        (TUNED, TunedError)):
        with pytest.raises(error):
            found.check(kind)  # what --strict stops at


def test_bench_table_reads_and_builds_once_even_when_a_write_fails(folder, capsys,
                                                                  monkeypatch):
    calls = {"load": 0, "build": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(result_set, "load_result_set",
                        counted("load", result_set.load_result_set))
    monkeypatch.setattr(all_tables, "build_tables", counted("build", all_tables.build_tables))

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(table, "write_text_atomic", full)
    assert main(["table", str(folder), "--out", str(folder)]) == 2
    captured = capsys.readouterr()
    assert calls == {"load": 1, "build": 1}
    assert "## Test accuracy (%)" in captured.out and "broken.json" in captured.out
    assert "accuracy.csv: No space left on device" in captured.err
    # the printed text is the one built for unwritten files: no figure is named
    assert "Figures: learning_curves" not in captured.out

    monkeypatch.undo()
    monkeypatch.setattr(result_set, "load_result_set",
                        counted("load", result_set.load_result_set))
    monkeypatch.setattr(all_tables, "build_tables", counted("build", all_tables.build_tables))

    def recomputed(*args, **kwargs):
        raise AssertionError("--brief recomputed the comparison the tables built")

    monkeypatch.setattr(summary, "paired_comparisons", recomputed)
    assert main(["table", "--brief", str(folder), "--out", str(folder / "out")]) == 0
    assert calls == {"load": 2, "build": 2}  # one more of each for --brief
    assert "Paired difference from MTL" in capsys.readouterr().out


def test_strict_stops_at_an_invalid_eval_file_before_any_file_is_written(tmp_path, capsys):
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", folder)
    (folder / "evals").mkdir()
    (folder / "evals" / "bad.json").write_text("[]")
    assert main(["table", "--strict", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert f"error: {folder / 'evals' / 'bad.json'}: not a " in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
