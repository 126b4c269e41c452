"""Files from elsewhere are data, never code or paths (issue 24): each probe of the issue's
table, with the malicious file made in the test's temporary folder."""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from bench.commands.main import main
from bench.store.model_files import ModelFileError, read_model_file
from core.keys import InvalidKeyError, check_key, path_inside
from methods import METHODS
from smoke_model_runs import KEYS  # beside this file (pytest puts it on sys.path)

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "results" / "runs" / "mtl_glyphs_5w1s_quick_seed0.json"
EVAL_ARGS = ("--episodes", "5", "--device", "cpu", "--no-progress")


# ------------------------------------------------------------------------------- keys
@pytest.mark.parametrize("bad", ["../x", "/abs/path", "a/b", ".hidden", "", "a\\b", "x" * 201,
                                 "tab\tkey", "é"])
def test_a_key_is_letters_digits_underscore_dash_dot_without_a_leading_dot(bad):
    with pytest.raises(InvalidKeyError):
        check_key(bad)
    assert check_key("mtl_glyphs_5w1s_quick_seed0_1a2b3c4d") == \
        "mtl_glyphs_5w1s_quick_seed0_1a2b3c4d"


def test_a_path_built_from_parts_stays_inside_its_folder(tmp_path):
    assert path_inside(tmp_path, "runs", "k.json") == tmp_path / "runs" / "k.json"
    for parts in (("..", "k.json"), ("runs", "/etc/k.json")):
        with pytest.raises(InvalidKeyError, match="would lie outside"):
            path_inside(tmp_path, *parts)


def _model_with(smoke_models: Path, folder: Path, of: str = KEYS[1], **changes) -> Path:
    """A copy of run ``of``'s smoke model file, with payload fields replaced (``config``
    merged)."""
    payload = torch.load(smoke_models / "models" / f"{of}.pt", weights_only=True)
    config = changes.pop("config", {})
    payload.update(changes)
    payload["config"] = {**payload["config"], **config}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{of}.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("recorded", ["../../escaped", "ABSOLUTE"])
def test_a_model_whose_key_is_a_path_is_refused_and_nothing_is_written_outside_out(
        smoke_models, tmp_path, capsys, recorded):
    outside = tmp_path / "outside"
    key = str(outside / "abs") if recorded == "ABSOLUTE" else recorded
    model = _model_with(smoke_models, tmp_path / "in", of=KEYS[0], key=key)
    out = tmp_path / "sub" / "out"
    assert main(["eval", str(model), "--out", str(out), *EVAL_ARGS]) == 2
    err = capsys.readouterr().err
    assert f"error: {model}: the run key it records" in err and "not a valid name" in err
    written = [p for p in tmp_path.rglob("*.json")]
    assert written == [] and not outside.exists()


# ------------------------------------------------------------------------ no imports
SIDE_EFFECT = '''
from pathlib import Path
Path({marker!r}).write_text("imported")
from methods.protonet import ProtoNet


class Sneaky(ProtoNet):
    name = "sneaky"
'''


@pytest.fixture
def sneaky_module(tmp_path, monkeypatch):
    """A module on the path whose import leaves a marker file: any import shows."""
    marker = tmp_path / "IMPORTED"
    (tmp_path / "sneaky_mod.py").write_text(SIDE_EFFECT.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    if "sneaky" in METHODS:
        METHODS.unregister("sneaky")
    sys.modules.pop("sneaky_mod", None)


def test_a_model_file_naming_a_module_is_not_imported_by_bench_eval(smoke_models, tmp_path,
                                                                    sneaky_module, capsys):
    model = _model_with(smoke_models, tmp_path / "models",
                        config={"method": "sneaky", "method_source": "sneaky_mod:Sneaky"})
    assert main(["eval", str(model), "--out", str(tmp_path / "out"), *EVAL_ARGS]) == 2
    err = capsys.readouterr().err
    assert "recorded in the file, which is not imported unless asked; pass --allow-import" in err
    assert not sneaky_module.exists() and "sneaky_mod" not in sys.modules


def _results(folder: Path, **changes) -> Path:
    """``folder/runs/<fixture>.json``: the fixture result with top-level fields replaced."""
    data = json.loads(FIXTURE.read_text())
    config = changes.pop("config", {})
    data.update(changes)
    data["config"] = {**data["config"], **config}
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    path = folder / "runs" / FIXTURE.name
    path.write_text(json.dumps(data))
    return path


def test_a_result_naming_a_module_is_tabulated_under_its_name_without_importing_it(
        tmp_path, sneaky_module, capsys):
    _results(tmp_path, config={"method": "sneaky", "method_source": "sneaky_mod:Sneaky"})
    assert main(["table", str(tmp_path), "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert not sneaky_module.exists() and "sneaky_mod" not in sys.modules
    assert "| sneaky | conv4-64 |" in out
    assert ("note: 1 file(s) of method 'sneaky' are shown under its recorded name; its import "
            "path 'sneaky_mod:Sneaky' was not imported") in out
    assert main(["table", str(tmp_path), "--out", str(tmp_path / "t"), "--allow-import"]) == 0
    assert sneaky_module.exists()  # asked for: imported
    assert "note: 1 file(s)" not in capsys.readouterr().out


BAD_MODULES = {
    "raising_mod": "raise RuntimeError('boom at import')\n",
    "exiting_mod": "import sys\nsys.exit(7)\n",
    "caps_mod": ("from methods.protonet import ProtoNet\n\n\nclass CapsMTL(ProtoNet):\n"
                 "    name = 'CapsMTL'\n"),
    "escape_mod": ("from methods.protonet import ProtoNet\n\n\nclass Escape(ProtoNet):\n"
                   "    name = '../escaped'\n"),
}


@pytest.mark.parametrize("spec, reason", [
    ("raising_mod:Foo", "raised RuntimeError: boom at import"),
    ("exiting_mod:Foo", "called sys.exit(7)"),
    ("..x:Y", "neither a registered method nor an import path"),
    ("methods.base:FewShotMethod", "does not implement loss() (an abstract base"),
    ("caps_mod:CapsMTL", "method name 'CapsMTL' has capitals; method names are matched "
                         "case-insensitively and stored in lower case: name it 'capsmtl'"),
    ("escape_mod:Escape", "method name '../escaped' is not a valid name"),
])
def test_a_bad_method_spec_is_one_error_line_before_anything_runs(tmp_path, monkeypatch,
                                                                  capsys, spec, reason):
    for name, text in BAD_MODULES.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    try:
        code = main(["run", "--methods", spec, "--dataset", "glyphs", "--budget", "smoke",
                     "--out", str(out), "--device", "cpu", "--no-progress"])
    finally:
        for name in BAD_MODULES:
            sys.modules.pop(name, None)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and spec in lines[0], err
    assert reason in lines[0], err
    assert not out.exists() and not (tmp_path.parent / "escaped").exists()


# ------------------------------------------------------------------------ model bytes
def _results_folder_copy(smoke_models: Path, folder: Path, key: str) -> Path:
    for sub, suffix in (("runs", ".json"), ("models", ".pt")):
        (folder / sub).mkdir(parents=True)
        shutil.copy(smoke_models / sub / f"{key}{suffix}", folder / sub)
    return folder / "models" / f"{key}.pt"


def test_a_model_changed_after_training_is_refused_naming_both_digests(smoke_models,
                                                                        tmp_path, capsys):
    model = _results_folder_copy(smoke_models, tmp_path / "r", KEYS[0])
    recorded = json.loads((tmp_path / "r" / "runs" / f"{KEYS[0]}.json").read_text())
    payload = torch.load(model, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = payload["state_dict"][name] + 0.5  # still finite
    torch.save(payload, model)
    with pytest.raises(ModelFileError) as caught:
        read_model_file(model)
    message = str(caught.value)
    assert recorded["model"]["sha256"] in message and "changed or replaced" in message
    from bench.store.model_files import sha256_of

    assert sha256_of(model.read_bytes()) in message
    assert main(["eval", str(model), "--out", str(tmp_path / "r"), *EVAL_ARGS]) == 2
    assert "changed or replaced after training" in capsys.readouterr().err


def test_non_finite_weights_say_the_model_file_is_corrupt(smoke_models, tmp_path):
    payload = torch.load(smoke_models / "models" / f"{KEYS[0]}.pt", weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], math.nan)
    path = tmp_path / "nan.pt"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=rf"the model file is corrupt: weight {name!r} "
                                             r"holds non-finite values"):
        read_model_file(path)
