"""The main job (``python3 -m tox -e run``, the README's first command): the methods tox.ini
runs by default are the ones the README says it runs, and ``tox -e full`` runs them all."""
import configparser
import re
from pathlib import Path

from methods import METHODS

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = re.compile(r"--methods \{env:BENCH_METHODS:([^}]*)\}")


def _tox_methods(env: str) -> list[str]:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    found = DEFAULT.findall(tox[f"testenv:{env}"]["commands"])
    assert len(found) == 1, f"[testenv:{env}] should run `bench run --methods {{env:...}}` once"
    return found[0].split(",")


def _readme_main_job() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("**Run the main job**")
    return text[start:text.index("```", start)]


def test_the_readme_names_the_methods_tox_runs_by_default():
    methods = _tox_methods("run")
    assert len(methods) == 6  # the paper's Table 3 methods
    named = {name for name in METHODS.names()
             if re.search(rf"\b{re.escape(METHODS.get(name).display_name)}\b",
                          _readme_main_job())}
    assert named == {METHODS.canonical(m) for m in methods}


def test_tox_full_runs_every_registered_method():
    assert _tox_methods("full") == ["all"]


def test_methods_all_is_every_registered_method():
    from argparse import Namespace

    from bench.commands.run_sweep import collapse_lists

    args = Namespace(methods=["all"], dataset=["glyphs"], shots=[1], seeds=[0])
    methods, datasets = collapse_lists(args)
    assert [name for name, _ in methods] == METHODS.names() and datasets == ["glyphs"]
