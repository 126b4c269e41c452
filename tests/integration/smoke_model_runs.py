"""The two smoke runs behind the ``smoke_models`` fixture (tests/conftest.py): MTL and ProtoNet
on glyphs, 5-way 1-shot, 20 test episodes, seed 0. Their keys carry the settings hash that a
non-default episode count adds (one identity per run), so tests read the keys from here."""
from bench.common.config import RunConfig, resolve_budget

METHODS = ("mtl", "protonet")


def smoke_model_configs() -> list[RunConfig]:
    return [RunConfig(method, "glyphs", 5, 1, 0, resolve_budget("smoke", method, "glyphs", 1),
                      episodes=20) for method in METHODS]


KEYS = tuple(config.key for config in smoke_model_configs())
