"""``--test-every`` is a recording option: it is in the result's config (so a reader knows the
curve has test points) but not in the run's identity, key, checkpoint compatibility or the
paired tables' cells; its test episodes are the first K of the run's own test episodes."""
from dataclasses import replace

import pytest

from bench.common.cells import cell_settings
from bench.store.checkpoint import normalized_config
from bench.common.config import RunConfig, resolve_budget
from datasets import load_dataset
from datasets.episodes import EpisodeSampler
from bench.run.training import stream_seed


def config(**changes) -> RunConfig:
    run = RunConfig("mtl", "glyphs", 5, 1, 0, resolve_budget("smoke", "mtl", "glyphs", 1),
                    episodes=20)
    return replace(run, **changes)


def test_test_every_is_recorded_but_not_identity():
    plain, along = config(), config(test_every=2, test_every_episodes=10)
    assert along.key == plain.key and along.settings() == plain.settings()
    assert "test_every" not in plain.to_dict()  # records without it are as before
    assert along.to_dict()["test_every"] == 2 and along.to_dict()["test_every_episodes"] == 10
    assert RunConfig.from_dict(along.to_dict()) == along
    assert normalized_config(along.to_dict()) == normalized_config(plain.to_dict())
    assert cell_settings(along.to_dict()) == cell_settings(plain.to_dict())


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="test_every must be >= 0"):
        config(test_every=-1)
    with pytest.raises(ValueError, match="between 1 and the run's test episodes"):
        config(test_every=1, test_every_episodes=21)
    with pytest.raises(ValueError) as refused:
        config(test_every=1, test_every_episodes=0)
    assert str(refused.value) == ("test_every_episodes must be between 1 and the run's test "
                                  "episodes (20), not 0")
    for edge in (1, 20):  # both ends of the range are fine
        assert config(test_every=1, test_every_episodes=edge).test_every_episodes == edge
    with pytest.raises(ValueError) as refused:
        config(log=("csv", "json", "xml"))
    assert str(refused.value) == ("log: unknown format(s) 'json', 'xml'; valid: tensorboard, "
                                  "csv")
    assert config(log=("csv", "csv")).log == ("csv",)  # each format once


def test_the_reduced_episodes_are_the_first_of_the_test_episodes():
    test = load_dataset("glyphs").test
    whole = EpisodeSampler(test, 5, 1, 15, stream_seed(0, "test")).sample(20)
    first = EpisodeSampler(test, 5, 1, 15, stream_seed(0, "test")).sample(8)
    assert first.digest() == whole.slice(0, 8).digest()


def test_log_is_recorded_but_not_identity():
    plain, logged = config(), config(log=("csv", "tensorboard", "csv"))
    assert logged.log == ("csv", "tensorboard")
    assert logged.key == plain.key and logged.settings() == plain.settings()
    assert "log" not in plain.to_dict() and logged.to_dict()["log"] == ["csv", "tensorboard"]
    assert RunConfig.from_dict(logged.to_dict()) == logged
    assert normalized_config(logged.to_dict()) == normalized_config(plain.to_dict())
    assert cell_settings(logged.to_dict()) == cell_settings(plain.to_dict())
    with pytest.raises(ValueError, match="unknown format"):
        config(log=("wandb",))


def test_every_recording_option_is_ignored_by_checkpoints_and_cells():
    from bench.common.cells import REPLICATE_FIELDS
    from bench.store.checkpoint import IGNORED_CONFIG_KEYS
    from bench.common.config import RECORDING_OPTIONS

    assert set(RECORDING_OPTIONS) <= set(IGNORED_CONFIG_KEYS) & set(REPLICATE_FIELDS)
