"""One identity per run (issue 10, section 1): the key, its settings hash, the variant, what
"finished" means, schema /1 files, and the tables that group by identity minus the seed."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench.store.checkpoint import check_compatible, normalized_config
from bench.common.config import (RunConfig, _json_normalised, canonical_json, describe_differences,
                          flat_settings, resolve_budget, resolved_budget, smoke_budget)
from bench.store.results import (SCHEMA, SCHEMA_V1, ResultFileError, existing_result, migrate_v1,
                           read_result)
from bench.report.table import accuracy_rows, efficiency_rows
from bench.report.all_tables import make_tables
from core.atomic import write_json_atomic
from core.budget import DATASET_AUGMENTATION
from datasets import DATASETS
from methods.plugins import method_class

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "results" / "runs"


def config(**changes) -> RunConfig:
    base = RunConfig("mtl", "glyphs", 5, 1, 0, resolve_budget("smoke", "mtl", "glyphs", 1))
    return replace(base, **changes)


def with_hparams(run: RunConfig, **hparams) -> RunConfig:
    return replace(run, budget=replace(run.budget, hparams={**run.budget.hparams, **hparams}))


# ------------------------------------------------------------------------------ key and hash

def test_the_defaults_keep_the_readable_key():
    assert config().key == "mtl_glyphs_5w1s_smoke_seed0" and config().variant() == ""
    assert config(seed=3).key == "mtl_glyphs_5w1s_smoke_seed3"
    # An override that sets the default value is the same experiment, with the same key.
    assert with_hparams(config(), normalize_features=True).key == config().key


@pytest.mark.parametrize("change, variant", [
    (dict(episodes=100), "episodes=100"),
    (dict(queries=5), "queries=5"),
    (dict(precision="bf16"), 'precision="bf16"'),
    (dict(solver="batched"), 'solver="batched"'),
    (dict(logreg_c=1.0), "logreg_c=1.0"),
    (dict(compile=True), "compile=true"),
    (dict(channels_last=True), "channels_last=true"),
    (dict(channels_last=False), "channels_last=false"),
])
def test_every_setting_that_can_change_a_number_changes_the_key(change, variant):
    run = config(**change)
    assert run.key == f"mtl_glyphs_5w1s_smoke_seed0_{run.settings_hash()}"
    assert run.settings_hash() != config().settings_hash()
    assert run.variant().replace('"', "") == variant.replace('"', "")


@pytest.mark.parametrize("budget_change, variant", [
    (dict(backbone="conv4-64"), 'backbone="conv4-64"'),
    (dict(feature_mode="flatten"), 'feature_mode="flatten"'),
    (dict(dropblock_ramp_steps=None), "dropblock_ramp_steps=null"),
    (dict(augmentation="lee2019"), 'augmentation="lee2019"'),
])
def test_budget_fields_are_part_of_the_identity(budget_change, variant):
    run = config(budget=replace(config().budget, **budget_change))
    assert run.key != config().key and run.variant() == variant


def test_hyperparameters_show_by_their_own_name_and_one_spelling_per_value():
    off = with_hparams(config(), normalize_features=False)
    assert off.variant() == "normalize_features=false" and off.key != config().key
    r2d2 = RunConfig("r2d2", "glyphs", 5, 1, 0, resolve_budget("smoke", "r2d2", "glyphs", 1))
    # --hparam scale_init=1 arrives as an int: the same setting as the default 1.0.
    assert with_hparams(r2d2, scale_init=1).key == r2d2.key == "r2d2_glyphs_5w1s_smoke_seed0"


def test_the_seed_and_the_import_path_are_not_identity():
    assert config(seed=7).settings() == config().settings()
    assert "seed" not in config().settings() and "method_source" not in config().settings()
    assert "method_source" not in config().to_dict()  # a registered method's records: as before
    assert config().identity("abc") == {"settings": config().settings(), "data": "abc"}


def test_the_settings_hash_is_stable_across_processes_and_dict_orders():
    run = with_hparams(config(episodes=100), normalize_features=False)
    digest = run.settings_hash()
    expected = hashlib.sha256(canonical_json(run.settings()).encode("utf-8")).hexdigest()[:8]
    assert re.fullmatch(r"[0-9a-f]{8}", digest) and digest == expected
    assert run.key.endswith(f"_{digest}") and digest != config().settings_hash()
    reordered = dict(reversed(list(run.to_dict().items())))
    reordered["budget"] = dict(reversed(list(reordered["budget"].items())))
    assert RunConfig.from_dict(reordered).settings_hash() == digest
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    code = ("from dataclasses import replace; from bench.common.config import RunConfig, resolve_budget;"
            "b = resolve_budget('smoke', 'mtl', 'glyphs', 1);"
            "b = replace(b, hparams={**b.hparams, 'normalize_features': False});"
            "print(RunConfig('mtl', 'glyphs', 5, 1, 0, b, episodes=100).settings_hash())")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                             capture_output=True, check=True).stdout.strip()
        assert out == digest


def test_select_on_native_means_unified_for_a_method_without_native_adaptation():
    mtl = config(select_on="native")
    assert mtl.select_on == "unified" and mtl.key == config().key
    proto = RunConfig("protonet", "glyphs", 5, 1, 0,
                      resolve_budget("smoke", "protonet", "glyphs", 1), select_on="native")
    assert proto.select_on == "native" and proto.variant() == 'select_on="native"'
    with pytest.raises(ValueError, match="select_on must be one of unified, native"):
        config(select_on="test")


def test_settings_flatten_to_dotted_keys_and_differences_name_what_is_missing():
    nested = {"budget": {"lr": 0.1, "hparams": {"inner_lr": 0.5}}, "episodes": 100}
    assert flat_settings(nested) == {"budget.lr": 0.1, "budget.hparams.inner_lr": 0.5,
                                     "episodes": 100}
    reference = {"budget": {"lr": 0.1, "hparams": {"inner_lr": 0.4, "steps": 2}},
                 "episodes": 100}
    # budget fields and hyperparameters by their own names; a setting only the reference
    # has is "<unset>"; one only this side has shows its value
    assert describe_differences(nested, reference) == "inner_lr=0.5, steps=<unset>"
    assert describe_differences(reference, nested) == "inner_lr=0.4, steps=2"


# ------------------------------------------------------------------------------ finished?

def _result(run: RunConfig, fingerprint: str | None = "f" * 64) -> dict:
    source = json.loads((FIXTURES / "mtl_glyphs_5w1s_quick_seed0.json").read_text())
    record = migrate_v1(source)
    record.update(key=run.key, config=json.loads(json.dumps(run.to_dict())),
                  data=None if fingerprint is None else
                  {"name": run.dataset, "source": "generated", "fingerprint": fingerprint})
    return record


def test_the_same_identity_is_finished_and_another_is_a_conflict(tmp_path):
    run = config()
    path = tmp_path / f"{run.key}.json"
    write_json_atomic(path, _result(run))
    assert existing_result(path, run, "f" * 64).finished
    assert not existing_result(tmp_path / "none.json", run, "f" * 64).finished
    other_data = existing_result(path, run, "0" * 64)
    assert not other_data.finished and "made from other data" in other_data.conflict
    assert "--force" in other_data.conflict and "Move" in other_data.conflict
    changed = with_hparams(run, normalize_features=False)
    clash = existing_result(path, changed, "f" * 64)  # e.g. a hash collision, or an old file
    assert "another configuration" in clash.conflict and "normalize_features=true" \
        in clash.conflict
    failed = {**_result(run), "status": "failed", "error": "boom"}
    write_json_atomic(path, failed)
    assert existing_result(path, run, "f" * 64) == existing_result(tmp_path / "x", run, None)


def test_a_v1_result_without_a_fingerprint_counts_as_finished_with_a_note(tmp_path):
    run = config()
    path = tmp_path / f"{run.key}.json"
    write_json_atomic(path, _result(run, fingerprint=None))
    found = existing_result(path, run, "f" * 64)
    assert found.finished and "fingerprint" in found.note


def test_a_v1_file_at_the_readable_key_with_other_settings_is_refused(tmp_path):
    source = FIXTURES / "mtl_glyphs_5w1s_quick_seed0.json"  # 40 test episodes, lr 0.001
    run = RunConfig("mtl", "glyphs", 5, 1, 0, resolve_budget("quick", "mtl", "glyphs", 1))
    assert run.key == source.stem  # the default run would write this very file
    found = existing_result(source, run, "f" * 64)
    assert not found.finished and "episodes=40" in found.conflict and "lr=0.001" \
        in found.conflict
    assert SCHEMA_V1 in found.conflict and "--force" in found.conflict


# ------------------------------------------------------------------------------ schema /1

def test_every_v1_fixture_loads_with_the_values_its_run_used():
    for path in sorted(FIXTURES.glob("*.json")):
        raw = json.loads(path.read_text())
        assert raw["schema"] == SCHEMA_V1
        record = read_result(path)
        assert record["schema"] == SCHEMA and record["migrated_from"] == SCHEMA_V1
        assert record["key"] == path.stem and record["data"] is None
        c = record["config"]
        assert c["select_on"] == "unified" and c["compile"] is False and c["logreg_c"] == 3.0
        assert c["budget"]["dropblock_ramp_steps"] == 40_000
        assert c["budget"]["augmentation"] == ("lee2019" if c["dataset"] == "mini" else None)
        assert set(c["budget"]["hparams"]) == set(resolve_budget(
            "quick", c["method"], c["dataset"], c["shots"]).hparams)
        if record["status"] == "ok":
            t, raw_t = record["timings"], raw["timings"]
            assert t["train_device_hours"] == t["device_hours"] == raw_t["device_hours"]
            assert t["run_seconds"] == raw_t["train_seconds"] + raw_t["validation_seconds"]
            assert t["run_device_hours"] == pytest.approx(t["run_seconds"] / 3600)


def test_a_v1_step_schedule_keeps_the_epochs_its_factors_started_at():
    raw = json.loads((FIXTURES / "metaoptnet_glyphs_5w5s_quick_seed0.json").read_text())
    raw["config"]["budget"].update(schedule="step", lr_epochs=[20, 40, 50],
                                   lr_factors=[0.06, 0.012, 0.0024])
    # Before issue 10 the factor of boundary 20 applied from the 21st epoch (counting from 1).
    assert migrate_v1(raw)["config"]["budget"]["lr_epochs"] == [21, 41, 51]


def test_a_checkpoint_written_before_issue_10_resumes_when_nothing_changed(tmp_path):
    run = RunConfig("mtl", "glyphs", 5, 1, 0, resolve_budget("quick", "mtl", "glyphs", 1))
    old = normalized_config(run.to_dict())
    for key in ("select_on", "compile", "channels_last"):
        del old[key]
    for key in ("augmentation", "dropblock_ramp_steps"):
        del old["budget"][key]
    old["budget"]["hparams"] = {}
    identity = {"name": "glyphs", "source": "generated", "fingerprint": "f" * 64}
    payload = {"key": run.key, "config": old, "dataset": identity, "world_size": 1}
    check_compatible(tmp_path / "c.pt", payload, key=run.key, config=run.to_dict(),
                     identity=identity, world_size=1)


# ------------------------------------------------------------------------------ tables

def _folder(tmp_path: Path, records: list[dict]) -> Path:
    for record in records:
        write_json_atomic(tmp_path / "runs" / f"{record['key']}.json", record)
    return tmp_path


def test_settings_are_never_averaged_and_the_variant_says_how_rows_differ(tmp_path):
    default, off = config(), with_hparams(config(), normalize_features=False)
    records = [_result(default), _result(off), _result(replace(off, seed=1))]
    rows = accuracy_rows([read_result(p) for p in sorted(
        _folder(tmp_path, records).glob("runs/*.json"))])
    assert sorted(zip(rows["variant"], rows["seeds"])) == [("", 1),
                                                           ("normalize_features=false", 2)]
    table = make_tables(tmp_path)
    assert "normalize_features=false |" in table
    eff = efficiency_rows([read_result(p) for p in sorted(tmp_path.glob("runs/*.json"))])
    assert sorted(eff["variant"]) == ["", "normalize_features=false"]


def test_one_configuration_on_two_datasets_contents_is_two_rows(tmp_path):
    a, b = _result(config(), "a" * 64), _result(config(seed=1), "b" * 64)
    rows = accuracy_rows([a, b])
    assert sorted(rows["variant"]) == ["data aaaaaaaa", "data bbbbbbbb"]


def test_two_results_of_one_identity_and_seed_are_an_error():
    a = _result(config())
    with pytest.raises(ResultFileError, match="same run"):
        accuracy_rows([a, {**a, "key": "copy"}])


def test_device_hours_are_never_averaged_across_devices():
    a, b = _result(config()), _result(config(seed=1))
    b = json.loads(json.dumps(b))
    b["provenance"]["device"] = "another CPU"
    frame = efficiency_rows([a, b])
    assert len(frame) == 2 and set(frame["seeds"]) == {1}


def test_canonical_json_is_sorted_compact_and_keeps_nan():
    assert canonical_json({"b": 1.5, "a": [1, float("nan")], "c": {"z": 1, "y": None}}) == \
        '{"a":[1,NaN],"b":1.5,"c":{"y":null,"z":1}}'
    normalised = _json_normalised({"t": (1, 2), "x": float("nan")})
    assert normalised["t"] == [1, 2] and normalised["x"] != normalised["x"]  # NaN kept


def test_budgets_resolve_by_name_and_refuse_unknown_names():
    with pytest.raises(ValueError) as refused:
        resolve_budget("fast", "mtl", "glyphs", 1)
    assert str(refused.value) == ("unknown budget 'fast'; valid budgets: smoke, quick, "
                                  "converged, long, paper")
    mini = DATASETS.get("mini")
    assert resolve_budget("smoke", "mtl", mini, 1) == resolve_budget("smoke", "mtl", "mini", 1)
    # a method trained on image batches: the CPU budgets in images, its paper budget as is
    assert resolve_budget("quick", "rfs", "glyphs", 1).meta_batch == 100
    assert resolve_budget("paper", "rfs", "mini", 5).meta_batch == 64
    # a whole number for a float hyperparameter becomes a float: one spelling per setting
    r2d2 = method_class("r2d2")
    hparams = resolved_budget(replace(smoke_budget(mini), hparams={"scale_init": 1}), r2d2,
                              mini).hparams
    assert type(hparams["scale_init"]) is float
    with pytest.raises(ValueError) as refused:
        resolved_budget(replace(smoke_budget(mini), augmentation="flip"), r2d2, mini)
    assert str(refused.value) == "unknown training augmentation 'flip'; valid: none, lee2019"
    # a configuration resolves the dataset's declared augmentation itself
    raw = smoke_budget(mini)
    assert raw.augmentation == DATASET_AUGMENTATION
    assert RunConfig("mtl", "mini", 5, 1, 0, raw).budget.augmentation == "lee2019"
    resolved_but_the_augmentation = replace(resolve_budget("smoke", "mtl", "mini", 1),
                                            augmentation=DATASET_AUGMENTATION)
    assert RunConfig("mtl", "mini", 5, 1, 0, resolved_but_the_augmentation).budget == \
        resolve_budget("smoke", "mtl", "mini", 1)


def test_a_paper_budget_is_the_default_for_its_shots():
    run = RunConfig("mtl", "mini", 5, 5, 0, resolve_budget("paper", "mtl", "mini", 5))
    assert run.key == "mtl_mini_5w5s_paper_seed0" and run.variant() == ""
