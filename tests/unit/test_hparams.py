"""core.hparams: one declared validation for every method's hyperparameters, usable before
any model exists and on values exactly as the command line delivers them."""
import pytest

from bench.common.arg_types import key_value
from core.hparams import HParam, HParamError, validate_hparams
from methods import METHODS

SPEC = {
    "inner_lr": HParam(0.01, float, gt=0, doc="inner-loop learning rate"),
    "steps": HParam(5, int, ge=1, doc="inner steps"),
    "test_lr": HParam(None, float, gt=0, optional=True, doc="null: inner_lr"),
    "smoothing": HParam(0.0, float, ge=0, lt=1),
    "first_order": HParam(False, bool),
    "solver": HParam("qp", str, choices=("qp", "ridge")),
}


def cli(*pairs: str) -> dict:
    """What ``--hparam KEY=VALUE ...`` hands over."""
    return dict(key_value(pair) for pair in pairs)


def test_defaults_come_back_in_declared_order_with_overrides_in_place():
    resolved = validate_hparams("method 'x'", SPEC, cli("steps=2", "inner_lr=0.5"))
    assert list(resolved) == list(SPEC)
    assert resolved["steps"] == 2 and resolved["inner_lr"] == 0.5 and resolved["test_lr"] is None


@pytest.mark.parametrize("pairs", [("inner_lr=1",), ("test_lr=null",), ("test_lr=0.2",),
                                   ("smoothing=0",), ("first_order=true",), ("solver=ridge",),
                                   ("steps=1",)])
def test_command_line_values_that_fit_are_accepted_unchanged(pairs):
    overrides = cli(*pairs)
    resolved = validate_hparams("method 'x'", SPEC, overrides)
    for key, value in overrides.items():
        assert resolved[key] == value and type(resolved[key]) is type(value)


@pytest.mark.parametrize("pair, message", [
    ("inner_lr=abc", 'inner_lr must be a number > 0, got "abc"'),
    ("inner_lr=0", "inner_lr must be a number > 0, got 0"),
    ("inner_lr=true", "inner_lr must be a number > 0, got true"),
    ("inner_lr=NaN", "inner_lr must be a number > 0, got NaN"),
    ("steps=2.5", "steps must be an integer >= 1, got 2.5"),
    ("steps=0", "steps must be an integer >= 1, got 0"),
    ("smoothing=1", "smoothing must be a number >= 0 and < 1, got 1"),
    ("first_order=1", "first_order must be true or false, got 1"),
    ("first_order=yes", 'first_order must be true or false, got "yes"'),
    ("test_lr=-1", "test_lr must be a number > 0 or null, got -1"),
    ("solver=svm", 'solver must be one of "qp", "ridge", got "svm"'),
])
def test_bad_values_say_what_is_accepted(pair, message):
    with pytest.raises(HParamError, match="^method 'x': hyperparameter ") as info:
        validate_hparams("method 'x'", SPEC, cli(pair))
    assert message in str(info.value)


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(HParamError) as info:
        validate_hparams("method 'x'", SPEC, cli("steps=0", "inner_lr=-1"))
    assert "steps must be" in str(info.value) and "inner_lr must be" in str(info.value)


def test_an_unknown_key_lists_every_valid_key_with_type_range_and_default():
    with pytest.raises(HParamError) as info:
        validate_hparams("method 'x'", SPEC, cli("inner_lrr=0.1"))
    message = str(info.value)
    assert message.startswith("method 'x' has no hyperparameter 'inner_lrr' (did you mean "
                              "'inner_lr'?). Valid: inner_lr (a number > 0, default 0.01); "
                              "steps (an integer >= 1, default 5); test_lr (a number > 0 or "
                              "null, default null);")
    assert 'solver (one of "qp", "ridge", default "qp")' in message


def test_a_spec_with_an_invalid_default_is_refused_when_declared():
    with pytest.raises(TypeError, match="default 0 is not valid"):
        HParam(0, int, ge=1)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_validates_its_defaults_without_building_a_model(name):
    cls = METHODS.get(name)
    assert cls.resolve_hparams({}) == {k: hp.default for k, hp in cls.hparam_spec.items()}
    with pytest.raises(HParamError, match=f"method '{name}' has no hyperparameter 'typo'"):
        cls.resolve_hparams({"typo": 1})
