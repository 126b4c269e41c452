"""methods.plugins: methods by import path (registered under their own name, origin
recorded, clear errors) and RunConfig's method_source."""
import json
import textwrap

import pytest

from bench.common.config import RunConfig, resolve_budget
from core.registry import UnknownNameError
from methods import METHODS
from methods.plugins import MethodImportError, import_method, method_class, resolve_method

MODULE = textwrap.dedent('''
    import torch.nn.functional as F

    from methods.base import FewShotMethod
    from methods.mtl import MTL


    class PlainCentroid(FewShotMethod):
        """Not decorated: registered under its class name in lower case."""

        def loss(self, batch):
            support, query = self.embed_episode(batch)
            return F.mse_loss(query.mean(1), support.mean(1))


    class MyMTL(MTL):
        """A subclass of a built-in inherits its name attribute but is a method of its own."""


    NOT_A_METHOD = 3
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "plugin_mod_t.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(METHODS.names())
    yield "plugin_mod_t"
    for name in set(METHODS.names()) - before:
        METHODS.unregister(name)


def test_an_undecorated_class_gets_its_lower_case_name_and_its_origin(plugin):
    cls = import_method(f"{plugin}:PlainCentroid")
    assert cls.name == "plaincentroid" and METHODS.get("plaincentroid") is cls
    assert cls.display_name == "plaincentroid" and not cls.efficiency_reference
    assert METHODS.origin("plaincentroid") == f"import path {plugin}:PlainCentroid"
    assert import_method(f"{plugin}:PlainCentroid") is cls  # importing again is harmless
    assert resolve_method(f" {plugin}:PlainCentroid ") == ("plaincentroid",
                                                           f"{plugin}:PlainCentroid")
    assert METHODS.origin("mtl") == "built in" and resolve_method("MTL") == ("mtl", None)


def test_a_subclass_of_a_built_in_is_a_method_of_its_own(plugin):
    cls = import_method(f"{plugin}:MyMTL")
    assert cls.name == "mymtl" and METHODS.get("mtl").name == "mtl"
    assert resolve_budget("quick", f"{plugin}:MyMTL", "glyphs", 5).backbone == "conv4-64"


@pytest.mark.parametrize("spec, message", [
    ("plugin_mod_t", "unknown method .plugin_mod_t."),
    ("plugin_mod_t:", "neither a registered method nor an import path"),
    ("no_such_module_t:Thing", "cannot import module 'no_such_module_t'"),
    ("plugin_mod_t:Missing", "module 'plugin_mod_t' has no 'Missing'"),
    ("plugin_mod_t:NOT_A_METHOD", "is 3, not a subclass of methods.base.FewShotMethod"),
])
def test_bad_import_paths_say_what_is_wrong(plugin, spec, message):
    with pytest.raises((MethodImportError, UnknownNameError), match=message) as info:
        resolve_method(spec)
    assert isinstance(info.value, (ValueError, KeyError))  # both end as CLI usage errors


def test_run_config_records_the_import_path_only_when_there_is_one(plugin):
    budget = resolve_budget("smoke", "mtl", "glyphs", 1)
    plain = RunConfig("mtl", "glyphs", 5, 1, 0, budget)
    assert "method_source" not in plain.to_dict()  # results and checkpoints as before
    assert RunConfig.from_dict(json.loads(json.dumps(plain.to_dict()))) == plain
    spec = f"{plugin}:PlainCentroid"
    name, source = resolve_method(spec)
    external = RunConfig(name, "glyphs", 5, 1, 0, resolve_budget("smoke", name, "glyphs", 1),
                         method_source=source)
    data = json.loads(json.dumps(external.to_dict()))
    assert data["method_source"] == spec and external.key == "plaincentroid_glyphs_5w1s_smoke_seed0"
    assert RunConfig.from_dict(data) == external
    METHODS.unregister(name)  # a new process: the name is unknown until the source is imported
    assert method_class(name, source).name == name
