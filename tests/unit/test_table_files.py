"""``bench table`` never loses a table (issue 11): an invalid file is listed under the tables
and nothing from it is averaged (``--strict`` stops instead); stored means and CIs must be what
the per-episode accuracies give; a folder that cannot be written still prints the tables
(``--out DIR`` writes them elsewhere); a file is not a folder; an empty folder writes nothing."""
import errno
import json
import shutil
from pathlib import Path

import pytest

import bench.report.table as table
import bench.store.written as written
from bench.commands.main import main
from bench.store.results import ResultFileError, accuracy_problem, read_result
from bench.common.stats import episode_ci95

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OUTPUTS = ("accuracy.csv", "accuracy.md", "efficiency.csv", "efficiency.md")
EDITED = "mtl_glyphs_5w5s_quick_seed0.json"


@pytest.fixture
def folder(tmp_path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", copy)
    return copy


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data["test"]["unified"])
    path.write_text(json.dumps(data))


def test_stored_mean_and_ci_must_be_what_the_accuracies_give():
    accs = [60.0, 80.0, 100.0]
    good = {"accuracies": accs, "mean": 80.0, "ci95": episode_ci95(accs)}
    assert accuracy_problem(good) is None
    assert accuracy_problem({**good, "mean": 80.0004}) is None  # rounding of stored accuracies
    assert "stored mean 80.5 disagrees with its 3 per-episode accuracies, whose mean is " \
           "80.0000" in accuracy_problem({**good, "mean": 80.5})
    assert "stored ci95 1.0 disagrees" in accuracy_problem({**good, "ci95": 1.0})
    assert "episode 1 holds nan" in accuracy_problem({**good, "accuracies": [60.0, float("nan"),
                                                                             100.0]})
    assert "episode 0 holds 120.0" in accuracy_problem({**good, "accuracies": [120.0]})
    one = {"accuracies": [50.0], "mean": 50.0, "ci95": float("nan")}
    assert accuracy_problem(one) is None  # one episode: no CI, and none stored


def test_an_edited_result_file_is_refused_naming_it(folder):
    path = folder / "runs" / EDITED
    edit(path, lambda res: res["accuracies"].__setitem__(0, float("nan")))
    with pytest.raises(ResultFileError, match=f"{EDITED}: test\\['unified'\\]: accuracies must"):
        read_result(path)


def test_invalid_files_are_listed_under_the_tables_and_never_averaged(folder, tmp_path,
                                                                      capsys):
    edit(folder / "runs" / EDITED, lambda res: res.__setitem__("mean", res["mean"] + 1.0))
    (folder / "runs" / "broken.json").write_text("{oops")
    assert main(["table", str(folder)]) == 0
    out = capsys.readouterr().out
    listed = out[out.index("## Files left out of these tables"):]
    assert f"{EDITED}: test['unified']: stored mean" in listed and "broken.json: not valid " \
        "JSON" in listed
    accuracy = (folder / "accuracy.csv").read_text()
    # the 5-shot MTL row now averages the two valid seeds only
    assert "MTL,conv4-64,unified (= native),quick,glyphs,5,5,2," in accuracy
    assert main(["table", str(folder), "--strict"]) == 2
    assert "broken.json: not valid JSON" in capsys.readouterr().err  # the first, sorted


def test_a_folder_that_cannot_be_written_still_prints_the_tables(folder, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setattr(written, "output_problem",
                        lambda path: "Read-only file system" if path == folder else None)
    assert main(["table", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "## Test accuracy (%)" in captured.out and "## Training cost" in captured.out
    assert captured.err.strip() == (f"note: the table files could not be written to {folder} "
                                    "(Read-only file system); pass --out DIR to write them "
                                    "elsewhere")
    assert not any((folder / name).exists() for name in OUTPUTS)
    assert main(["table", str(folder), "--out", str(tmp_path / "tables")]) == 0
    assert all((tmp_path / "tables" / name).exists() for name in OUTPUTS)


def test_a_full_disk_while_writing_tables_keeps_the_old_files_and_prints(folder, capsys,
                                                                        monkeypatch):
    (folder / "accuracy.csv").write_text("the previous table\n")

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(table, "write_text_atomic", full)
    assert main(["table", str(folder), "--out", str(folder)]) == 2
    captured = capsys.readouterr()
    assert "## Test accuracy (%)" in captured.out
    assert captured.err.strip() == (f"error: the table files could not be written to {folder} "
                                    f"({folder / 'accuracy.csv'}: No space left on device)")
    assert (folder / "accuracy.csv").read_text() == "the previous table\n"


def test_a_file_is_not_a_folder_and_an_empty_folder_writes_nothing(tmp_path, capsys):
    result = FIXTURES / "results" / "runs" / EDITED
    assert main(["table", str(result)]) == 2
    assert f"{result} is a file, not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["table", str(empty)]) == 2
    assert f"no results in {empty}" in capsys.readouterr().err
    assert list(empty.iterdir()) == []
