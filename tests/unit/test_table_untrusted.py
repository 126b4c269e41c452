"""One bad file never stops a table (issue 24, item 3): every file that cannot be read is
listed under "Files left out of these tables" with its name and reason, the rest is
tabulated; ``--strict`` stops at the first. And a property-based test: any mutation of a
valid result file leaves ``bench table`` standing, and nothing it tabulates fails the
schema."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bench.store.results
from bench.commands.main import main
from bench.report.table import efficiency_rows
from bench.store.result_set import load_results
from bench.report.all_tables import make_tables

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "results" / "runs" / "mtl_glyphs_5w1s_quick_seed0.json"
VALID = json.loads(FIXTURE.read_text())
DEEP = 200_000


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _with_timing(name: str, value: float) -> str:
    data = json.loads(json.dumps(VALID))
    data["timings"][name] = value
    return json.dumps(data)  # NaN is written as the NaN literal Python's json reads back


def _without(field: str) -> str:
    data = json.loads(json.dumps(VALID))
    del data[field]
    return json.dumps(data)


BAD_FILES = {
    "runs/deep.json": ("[" * DEEP + "]" * DEEP, "nested too deeply"),
    "evals/deep.json": ("[" * DEEP + "]" * DEEP, "nested too deeply"),
    "runs/random.json": (bytes(range(256)) * 4, "not UTF-8 text"),
    "runs/nan_hours.json": (_with_timing("train_device_hours", math.nan),
                            "timings.train_device_hours is nan"),
    "runs/negative_hours.json": (_with_timing("train_device_hours", -5),
                                 "timings.train_device_hours is -5"),
    "runs/no_timings.json": (_without("timings"), "missing key(s) timings"),
    "runs/large.json": (json.dumps({**VALID, "padding": "x" * 600_000}), "over the limit"),
}


@pytest.fixture
def folder_with_bad_files(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(bench.store.results, "MAX_FILE_BYTES", 500_000)  # the deep files fit
    shutil.copy(FIXTURE, _write(tmp_path, "runs/good.json", ""))
    for name, (content, _) in BAD_FILES.items():
        _write(tmp_path, name, content)
    return tmp_path


def test_bad_files_are_listed_with_their_reason_and_the_rest_is_tabulated(
        folder_with_bad_files, capsys):
    folder = folder_with_bad_files
    assert main(["table", str(folder), "--out", str(folder / "tables")]) == 0
    out = capsys.readouterr().out
    listed = out.split("## Files left out of these tables", 1)[1]
    for name, (_, reason) in BAD_FILES.items():
        line = next((l for l in listed.splitlines() if str(folder / name) in l), None)
        assert line is not None and reason in line, (name, line)
    assert "| MTL | conv4-64 | unified (= native) | quick |" in out  # the good file
    assert "nan CPU-hours" not in out and "-5.0000" not in out


def test_strict_stops_at_the_first_bad_file_naming_it(folder_with_bad_files, capsys):
    folder = folder_with_bad_files
    assert main(["table", str(folder), "--out", str(folder / "tables"), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder}") and "runs" in err[0]


# ------------------------------------------------------------------------------------ fuzz
NASTY = st.one_of(
    st.none(), st.booleans(), st.just(math.nan), st.just(math.inf), st.just(-5),
    st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True),
    st.text(max_size=8), st.sampled_from(["../x", "/abs", "a/b", ".hidden", "CAPS", "x" * 300]),
    st.just([]), st.just({}), st.just(json.loads('[' * 40 + ']' * 40)),
    st.lists(st.integers(), max_size=3))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into ``value`` (the per-episode lists only through their first item)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:1]):
            found += _paths(child, (*prefix, index))
    return found


PATHS = _paths(VALID)


def _mutated(path: tuple, action: str, value: Any) -> dict:
    data = json.loads(json.dumps(VALID))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


FIGURES = ["accuracy_unified", "accuracy_native", "train_device_hours", "run_device_hours",
           "device_hours", "device_count", "images_seen", "steps"]


def _finite_and_non_negative(frame) -> bool:
    numbers = frame[FIGURES].astype(float)
    return bool(((numbers.abs() < math.inf) & (numbers >= 0)).all().all())


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), action=st.sampled_from(["replace", "delete"]),
       value=NASTY)
def test_a_mutated_result_never_breaks_the_table_nor_shows_an_invalid_value(
        tmp_path_factory, path, action, value):
    folder = tmp_path_factory.mktemp("fuzz")
    mutated = _mutated(path, action, value)
    target = _write(folder, "runs/mutated.json", json.dumps(mutated))
    text = make_tables(folder, folder / "tables", strict=False, write=False)  # never raises
    left_out = str(target) in text.split("## Files left out of these tables")[-1] \
        if "## Files left out" in text else False
    if left_out:
        return
    [result] = load_results(folder, [])
    efficiency = efficiency_rows([result])
    assert _finite_and_non_negative(efficiency), efficiency[FIGURES]
    for protocol in result["test"].values():
        assert all(0 <= a <= 100 for a in protocol["accuracies"])
        assert math.isfinite(protocol["mean"]) and 0 <= protocol["mean"] <= 100
    assert os.path.basename(str(result["key"])) == result["key"]
