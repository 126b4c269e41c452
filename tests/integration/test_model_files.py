"""Model files (bench/store/model_files.py): every finished run writes its selected model, loadable with
``torch.load(weights_only=True)``, named with its sha256 in the result; anything that is not a
usable model file is a one-line error naming the file."""
import hashlib
import json
import sys
from dataclasses import replace

import pytest
import torch

from bench.api import load_model
from bench.store.checkpoint import save_checkpoint
from bench.common.config import RunConfig, resolve_budget
from bench.store.model_files import MODEL_FORMAT, ModelFileError, read_model_file
from bench.store.results import read_result, result_path
from bench.sweep.runs import run_sweep
from datasets import load_dataset
from methods import METHODS

from smoke_model_runs import KEYS  # beside this file (pytest puts it on sys.path)


@pytest.mark.parametrize("key", KEYS)
def test_a_run_writes_its_selected_model_and_names_it_in_the_result(smoke_models, key):
    record = read_result(result_path(smoke_models, key))
    path = smoke_models / record["model"]["path"]
    assert record["model"]["path"] == f"models/{key}.pt"
    data = path.read_bytes()
    assert record["model"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["model"]["bytes"] == len(data)
    payload = torch.load(path, weights_only=True)  # tensors and plain values only
    assert payload["format"] == MODEL_FORMAT and payload["key"] == key
    assert payload["config"] == json.loads(json.dumps(record["config"]))
    glyphs = load_dataset("glyphs")
    assert payload["dataset"]["channels"] == 1 and payload["dataset"]["image_size"] == 28
    assert payload["dataset"]["mean"] == list(glyphs.mean)
    assert payload["dataset"]["std"] == list(glyphs.std)
    assert len(payload["dataset"]["fingerprint"]) == 64
    assert payload["selection"]["best_epoch"] == record["selection"]["best_epoch"]
    assert payload["provenance"] == record["provenance"]
    assert all(torch.is_tensor(v) or k.endswith("_extra_state")
               for k, v in payload["state_dict"].items())


def test_the_weights_are_those_of_the_selected_epoch_not_the_last(smoke_models):
    """The backbone counts its optimiser steps, so the saved step count tells the epoch."""
    earlier = 0
    for key in KEYS:
        record = read_result(result_path(smoke_models, key))
        state = torch.load(smoke_models / record["model"]["path"],
                           weights_only=True)["state_dict"]
        best, epochs = record["selection"]["best_epoch"], record["timings"]["epochs"]
        steps = record["config"]["budget"]["steps_per_epoch"]
        assert state["backbone._extra_state"]["schedule_step"] == best * steps
        earlier += best < epochs
    assert earlier, "a fixture run whose best epoch is not its last makes this test mean more"


def test_no_save_model_writes_no_model(tmp_path):
    config = RunConfig("mtl", "glyphs", 5, 1, 3, resolve_budget("smoke", "mtl", "glyphs", 1),
                       episodes=5)
    run_sweep([config], {"glyphs": load_dataset("glyphs")}, torch.device("cpu"), tmp_path,
              progress=False, save_models=False)
    assert "model" not in read_result(result_path(tmp_path, config.key))
    assert not (tmp_path / "models").exists()


def _one_line_error(path, match):
    with pytest.raises(ModelFileError) as caught:
        read_model_file(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message and match in message, message


def test_a_truncated_model_file_is_named(smoke_models, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes((smoke_models / "models" / f"{KEYS[0]}.pt").read_bytes()[:4000])
    _one_line_error(path, "not a readable model file: it is a zip archive that torch cannot "
                          "read: truncated or corrupt.")


def test_a_checkpoint_is_not_a_model_file(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"key": "x", "model": {"w": torch.zeros(2)}})
    _one_line_error(path, "a training checkpoint")


@pytest.mark.parametrize("content, match", [
    ({"format": "something/1", "state_dict": {}}, "format 'something/1'"),
    ([1, 2, 3], "it holds a list"),
    ({"format": MODEL_FORMAT, "key": "k"}, "model file without config"),
])
def test_other_torch_files_are_not_model_files(tmp_path, content, match):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    _one_line_error(path, match)


def test_text_and_pickled_code_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model\n")
    # one whole sentence of our own (issue 27 item 7), never torch's message cut short
    _one_line_error(text, "not a readable model file: it is not a file that torch.save wrote "
                          "(or it is truncated or corrupt).")
    code = tmp_path / "code.pt"
    torch.save({"format": MODEL_FORMAT, "payload": replace}, code)  # a function: needs code
    _one_line_error(code, "not a readable model file: it holds pickled Python objects, which a "
                          "weights-only load refuses (a model file holds tensors and plain "
                          "values only).")
    with pytest.raises(ModelFileError) as caught:
        read_model_file(code)
    assert str(caught.value).endswith("only).") and "weights_only" not in str(caught.value)


def _rewritten(smoke_models, tmp_path, key, **config_changes):
    payload = torch.load(smoke_models / "models" / f"{key}.pt", weights_only=True)
    payload["config"] = {**payload["config"], **config_changes}
    path = tmp_path / f"{key}.pt"
    torch.save(payload, path)
    return path


def test_an_unregistered_method_is_named_with_the_file(smoke_models, tmp_path):
    path = _rewritten(smoke_models, tmp_path, KEYS[0], method="nosuchmethod")
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "'nosuchmethod' is not available" in message
    assert "\n" not in message


EXTERNAL = '''
from methods import register_method
from methods.protonet import ProtoNet


@register_method("t13-proto")
class T13Proto(ProtoNet):
    """ProtoNet under another name, defined outside the repository."""
'''


def test_an_external_method_is_imported_again_from_its_method_source(smoke_models, tmp_path,
                                                                      monkeypatch):
    (tmp_path / "t13ext.py").write_text(EXTERNAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "t13-proto" not in METHODS
    path = _rewritten(smoke_models, tmp_path, KEYS[1], method="t13-proto",
                      method_source="t13ext:T13Proto")
    try:
        # a file's contents never import code: refused, saying what to pass, nothing imported
        with pytest.raises(ModelFileError, match=r"import path 't13ext:T13Proto' recorded in "
                                                 r"the file, which is not imported unless "
                                                 r"asked; pass --allow-import"):
            load_model(path)
        assert "t13ext" not in sys.modules and "t13-proto" not in METHODS
        model = load_model(path, allow_import=True)
        assert type(model.method).__name__ == "T13Proto" and not model.method.training
    finally:
        if "t13-proto" in METHODS:
            METHODS.unregister("t13-proto")
        sys.modules.pop("t13ext", None)
    broken = _rewritten(smoke_models, tmp_path, KEYS[1], method="t13-gone",
                        method_source="t13missing:Gone")
    with pytest.raises(ModelFileError, match=r"its method 't13-gone' is not available here "
                                             r"\(import path 't13missing:Gone'\)"):
        load_model(broken, allow_import=True)
