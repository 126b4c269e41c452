"""``bench eval`` (bench/commands/eval.py, bench/api/evaluation.py): a run's own model evaluated
with the run's settings gives the run's per-episode accuracies exactly, under both protocols;
a list of C reuses one feature pass; other data is resized or refused by channel count; a bad
file costs its own line only."""
import json
import shutil

import pytest
import torch

import bench.api.evaluation as evaluation_run
from bench.api import load_model
from bench.store.checkpoint import dataset_identity, save_checkpoint
from bench.commands.main import main
from bench.api.evaluation import ChannelMismatchError, evaluate_model
from bench.store.eval_files import EvalSettings, load_evals
from bench.store.results import read_result, result_path
from datasets import ClassSplit, FewShotDataset

from smoke_model_runs import KEYS  # beside this file (pytest puts it on sys.path)
RUN_SETTINGS = ("--ways", "5", "--shots", "1", "--queries", "15", "--episodes", "20",
                "--seed", "0")


def _evals(out):
    return {(r["source_model"]["key"], r["settings"]["protocol"], r["settings"]["logreg_c"]): r
            for r in load_evals(out)}


def test_eval_reproduces_the_runs_test_accuracies_exactly(smoke_models, tmp_path, monkeypatch):
    calls = []
    original = evaluation_run.episode_features

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation_run, "episode_features", counted)
    code = main(["eval", str(smoke_models / "models"), *RUN_SETTINGS, "--logreg-c", "3,0.1",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    assert len(calls) == 2  # one feature pass per model, shared by both values of C
    evals = _evals(tmp_path)
    assert len(evals) == 5  # MTL: unified at 2 C; ProtoNet: unified at 2 C and native
    for key in KEYS:
        run = read_result(result_path(smoke_models, key))
        sha = run["model"]["sha256"]
        for protocol in ("unified", "native"):
            C = 3.0 if protocol == "unified" else None
            found = evals.get((key, protocol, C))
            if found is None:  # MTL: native is the unified protocol
                assert run["native_is_unified"] and protocol == "native"
                continue
            assert found["result"]["accuracies"] == run["test"][protocol]["accuracies"]
            assert found["result"]["mean"] == run["test"][protocol]["mean"]
            assert found["result"]["ci95"] == run["test"][protocol]["ci95"]
            assert found["episode_hash"] == run["episode_hash"]
            assert found["source_model"]["sha256"] == sha
            assert not found["cross_dataset"] and not found["preprocessing"]["resized"]
        other = evals[(key, "unified", 0.1)]
        assert other["settings"]["l2_penalty"] == pytest.approx(10.0)
        assert other["result"]["accuracies"] != run["test"]["unified"]["accuracies"]


def test_the_defaults_are_the_runs_own_settings_and_reruns_skip(smoke_models, tmp_path,
                                                                 capsys):
    model = smoke_models / "models" / f"{KEYS[0]}.pt"
    assert main(["eval", str(model), "--out", str(tmp_path), "--no-progress"]) == 0
    (found,) = load_evals(tmp_path)
    run = read_result(result_path(smoke_models, KEYS[0]))
    assert found["result"]["accuracies"] == run["test"]["unified"]["accuracies"]
    assert found["settings"]["logreg_c"] == 3.0 and found["settings"]["episodes"] == 20
    capsys.readouterr()
    assert main(["eval", str(model), "--out", str(tmp_path), "--no-progress"]) == 0
    assert "skip " in capsys.readouterr().out


def test_the_validation_split_gives_the_selected_epochs_validation_accuracy(smoke_models,
                                                                            tmp_path):
    """The validation episodes of the run's seed: the saved model is the selected one."""
    for key in KEYS:
        run = read_result(result_path(smoke_models, key))
        episodes = run["config"]["budget"]["val_episodes"]
        assert main(["eval", str(smoke_models / "models" / f"{key}.pt"), "--split", "val",
                     "--episodes", str(episodes), "--protocol", "unified", "--out",
                     str(tmp_path), "--no-progress"]) == 0
    for found in load_evals(tmp_path):
        run = read_result(result_path(smoke_models, found["source_model"]["key"]))
        assert found["settings"]["split"] == "val"
        assert found["result"]["mean"] == run["selection"]["best_val_accuracy"]


def test_a_bad_file_costs_its_own_line_and_the_others_are_evaluated(smoke_models, tmp_path,
                                                                    capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(smoke_models / "models" / f"{KEYS[0]}.pt", folder)
    (folder / "cut.pt").write_bytes((folder / f"{KEYS[0]}.pt").read_bytes()[:3000])
    save_checkpoint(folder / "checkpoint.pt", {"key": KEYS[0]})
    code = main(["eval", str(folder), str(tmp_path / "absent.pt"), "--out",
                 str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {folder / 'cut.pt'}: not a readable model file" in err
    assert f"error: {folder / 'checkpoint.pt'}: a training checkpoint" in err
    assert f"error: {tmp_path / 'absent.pt'}: no such model file" in err
    assert len(load_evals(tmp_path / "out")) == 1


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf"])
def test_a_non_positive_C_is_a_one_line_usage_error(smoke_models, tmp_path, capsys, value):
    code = main(["eval", str(smoke_models / "models"), "--logreg-c", f"3,{value}",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --logreg-c: C must be") and repr(value) in err
    assert not (tmp_path / "out" / "evals").exists()


def synthetic(channels, size, name="synthetic"):
    """A tiny class-split dataset of random images (8 classes x 20 per split)."""
    g = torch.Generator().manual_seed(0)

    def split(tag):
        images = torch.randint(0, 256, (160, channels, size, size), generator=g,
                               dtype=torch.uint8)
        return ClassSplit(tag, images, torch.arange(8).repeat_interleave(20),
                          tuple(f"{tag}{i}" for i in range(8)))

    return FewShotDataset(name, split("train"), split("val"), split("test"),
                          (0.5,) * channels, (0.25,) * channels, "random")


def _settings(data, episodes=4):
    return EvalSettings(data.name, "test", 5, 1, 5, episodes, 0, "sklearn", "fp32")


def test_other_data_of_another_size_is_resized_and_said_so(smoke_models, tmp_path):
    model = load_model(smoke_models / "models" / f"{KEYS[1]}.pt")
    data = synthetic(1, 40)
    outcomes = evaluate_model(model, data, dataset_identity(data), _settings(data),
                              ["unified", "native"], [3.0], tmp_path, {}, progress=False)
    assert [o.status for o in outcomes] == ["done", "done"]
    record = json.loads(outcomes[0].path.read_text())
    assert record["cross_dataset"] and record["preprocessing"]["resized"]
    assert record["preprocessing"]["data_image_size"] == [40, 40]
    assert record["preprocessing"]["model_image_size"] == 28
    assert len(record["result"]["accuracies"]) == 4


def test_other_channel_counts_are_refused_naming_both(smoke_models, tmp_path):
    model = load_model(smoke_models / "models" / f"{KEYS[0]}.pt")
    data = synthetic(3, 28, "colour")
    with pytest.raises(ChannelMismatchError,
                       match=r"takes 1-channel images \(trained on glyphs\) but dataset colour "
                             r"has 3-channel images"):
        evaluate_model(model, data, dataset_identity(data), _settings(data), ["unified"],
                       [3.0], tmp_path, {}, progress=False)


@pytest.mark.slow
def test_a_glyphs_model_on_omniglot(smoke_models, tmp_path, omniglot_root):
    code = main(["eval", str(smoke_models / "models" / f"{KEYS[0]}.pt"), "--dataset",
                 "omniglot", "--data-root", str(omniglot_root), "--episodes", "10",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    (record,) = load_evals(tmp_path)
    assert record["settings"]["dataset"] == "omniglot" and record["cross_dataset"]
    assert record["model"]["dataset"]["name"] == "glyphs"
    assert 20.0 <= record["result"]["mean"] <= 100.0


@pytest.fixture(scope="module")
def seed1_c01(tmp_path_factory):
    """``bench run`` of one MTL smoke run at seed 1 with ``--logreg-c 0.1`` (not the defaults:
    a run that silently used seed 0's episodes or C = 3 somewhere would show below)."""
    out = tmp_path_factory.mktemp("seed1-c01")
    assert main(["run", "--methods", "mtl", "--dataset", "glyphs", "--ways", "5", "--shots", "1",
                 "--seeds", "1", "--budget", "smoke", "--episodes", "20", "--logreg-c", "0.1",
                 "--out", str(out), "--no-progress"]) == 0
    (model,) = (out / "models").glob("*.pt")
    return out, model, read_result(result_path(out, model.stem))


def test_a_seed_1_run_at_C_0_1_is_reproduced_by_eval(seed1_c01, smoke_models, tmp_path):
    """Test and validation accuracies of a non-default run come back from ``bench eval`` with
    the same seed and C; its episodes are not seed 0's."""
    out, model, run = seed1_c01
    assert (run["config"]["seed"], run["config"]["logreg_c"]) == (1, 0.1)
    seed0 = read_result(result_path(smoke_models, KEYS[0]))  # MTL, same settings, seed 0
    assert run["episode_hash"] != seed0["episode_hash"]
    assert run["test"]["unified"]["accuracies"] != seed0["test"]["unified"]["accuracies"]
    assert main(["eval", str(model), "--seed", "1", "--logreg-c", "0.1", "--episodes", "20",
                 "--out", str(tmp_path / "test"), "--no-progress"]) == 0
    (found,) = load_evals(tmp_path / "test")
    assert found["episode_hash"] == run["episode_hash"]
    assert found["result"]["accuracies"] == run["test"]["unified"]["accuracies"]
    val_episodes = run["config"]["budget"]["val_episodes"]
    assert main(["eval", str(model), "--split", "val", "--seed", "1", "--logreg-c", "0.1",
                 "--episodes", str(val_episodes), "--protocol", "unified",
                 "--out", str(tmp_path / "val"), "--no-progress"]) == 0
    (val,) = load_evals(tmp_path / "val")
    assert val["result"]["mean"] == run["selection"]["best_val_accuracy"]
