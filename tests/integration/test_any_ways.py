"""Issue 27, item 8: a 5-way model on 10-way episodes. ProtoNet's native protocol (a head built
from the episode's classes) adapts to them, in ``bench eval`` and ``LoadedModel.predict``
alike; ANIL's (it fine-tunes its trained 5-way head, ``native_ways_fixed``) is refused before
any work with one sentence that says why."""
import pytest
import torch

from bench.api import LoadedModel, load_model
from bench.commands.main import main
from bench.store.eval_files import load_evals
from bench.run.train_and_test import draw_episodes
from bench.sweep.runs import run_sweep
from bench.common.config import RunConfig, resolve_budget
from datasets import load_dataset

from smoke_model_runs import KEYS  # beside this file (pytest puts it on sys.path)

WAYS = 10


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


@pytest.fixture(scope="module")
def anil_model(tmp_path_factory, glyphs):
    """A 5-way 1-shot ANIL smoke run on glyphs and its model file."""
    out = tmp_path_factory.mktemp("anil")
    config = RunConfig("anil", "glyphs", 5, 1, 0, resolve_budget("smoke", "anil", "glyphs", 1),
                       episodes=4)
    assert run_sweep([config], {"glyphs": glyphs}, torch.device("cpu"), out,
                     progress=False).finished == [config.key]
    return out / "models" / f"{config.key}.pt"


def _episode(glyphs):
    """One 10-way 1-shot episode of the glyphs test split, labelled with arbitrary integers."""
    episodes = draw_episodes(glyphs.test, WAYS, 1, 3, 1, 0)
    images = glyphs.test.images
    return (images[episodes.support[0]], episodes.support_labels[0] * 3 + 1,
            images[episodes.query[0]], episodes.query_labels[0] * 3 + 1)


def test_protonet_adapts_natively_to_the_episodes_classes(smoke_models, glyphs):
    model = load_model(smoke_models / "models" / f"{KEYS[1]}.pt")
    assert model.config.ways == 5 and not type(model.method).native_ways_fixed
    support, labels, query, _ = _episode(glyphs)
    predicted = model.predict(support, labels, query, protocol="native")
    # The nearest prototype of the 10 classes (ProtoNet's head: negative squared distances,
    # positive scale), computed here from the model's raw features.
    feats = model.embed(torch.cat([support, query]), normalize=False)
    prototypes = feats[:WAYS]  # 1-shot: each support image is its class's prototype
    nearest = torch.cdist(feats[WAYS:], prototypes).argmin(1)
    assert float(model.method.scale.detach()) > 0
    assert torch.equal(predicted, labels[nearest])
    assert len(set(predicted.tolist())) > 5  # classes beyond the training way count


def test_bench_eval_runs_protonets_native_protocol_on_more_ways(smoke_models, tmp_path):
    code = main(["eval", str(smoke_models / "models" / f"{KEYS[1]}.pt"), "--ways", str(WAYS),
                 "--shots", "1", "--episodes", "3", "--protocol", "native", "--out",
                 str(tmp_path), "--no-progress"])
    assert code == 0
    (record,) = load_evals(tmp_path)
    assert record["settings"]["ways"] == WAYS and record["settings"]["protocol"] == "native"
    assert len(record["result"]["accuracies"]) == 3


def test_anil_refuses_other_way_counts_natively_before_any_work(anil_model, glyphs,
                                                                 monkeypatch):
    model = load_model(anil_model)
    assert type(model.method).native_ways_fixed
    support, labels, query, _ = _episode(glyphs)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    monkeypatch.setattr(LoadedModel, "embed", no_work)
    monkeypatch.setattr(LoadedModel, "_predict_native", no_work)
    with pytest.raises(ValueError) as refused:
        model.predict(support, labels, query, protocol="native")
    message = str(refused.value)
    assert message.count(".") == 1 and message.endswith(".")  # one sentence
    assert "ANIL" in message and "5-way head" in message and "10-way episodes" in message
    monkeypatch.undo()
    assert model.predict(support, labels, query, protocol="unified").shape == (WAYS * 3,)


def test_bench_eval_refuses_anils_native_protocol_on_other_ways(anil_model, tmp_path, capsys):
    code = main(["eval", str(anil_model), "--ways", str(WAYS), "--protocol", "native",
                 "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and not (tmp_path / "evals").exists()
    assert err[0].startswith(f"error: {anil_model}: the native protocol of ANIL fine-tunes "
                             "the 5-way head")
    assert err[1] == "error: no usable model file; nothing evaluated"
    assert main(["eval", str(anil_model), "--ways", "5", "--protocol", "native", "--episodes",
                 "2", "--out", str(tmp_path), "--no-progress"]) == 0


def test_only_methods_that_adapt_a_trained_head_declare_a_fixed_way_count():
    from methods import METHODS

    fixed = {name for name in METHODS.names() if METHODS.get(name).native_ways_fixed}
    assert fixed == {"maml", "anil", "imaml", "minibatchprox"}
