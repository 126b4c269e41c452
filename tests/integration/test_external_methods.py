"""A method that lives outside the repository: the README's worked example ("Adding a
method"), saved in a temporary package that is only on PYTHONPATH, runs a glyphs smoke sweep
under both protocols, in --isolate children (which import it again from the run's
configuration), under torchrun with two processes, as an installed entry point, and is
tabulated; no file of the repository changes."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = "mypkg.cosine:CosineProto"
#: The readable part of the runs' key (20 test episodes are not the default, so the file name
#: adds the settings hash).
KEY = "cosine-proto_glyphs_5w1s_smoke_seed0"
SMOKE = ("--dataset", "glyphs", "--shots", "1", "--budget", "smoke", "--episodes", "20",
         "--device", "cpu", "--no-progress")


def readme_example() -> str:
    """The first Python code block of the README's "Adding a method" section."""
    section = REPO.joinpath("README.md").read_text().split("### Adding a method", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def repository_state() -> object:
    """What ``git status`` says (every file, untracked ones included); outside a git checkout,
    the size and time of every file but caches."""
    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                              cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".tox", "__pycache__", ".pytest_cache"}
        return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in REPO.rglob("*")
                      if p.is_file() and not skip.intersection(p.relative_to(REPO).parts))


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "cosine.py").write_text(readme_example())
    return root


def bench(*args: object, path: Path, prefix: tuple[str, ...] = ()) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(path)]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *prefix, "-m", "bench", *map(str, args)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def result(out: Path) -> dict:
    files = list((out / "runs").glob(f"{KEY}_*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_the_readme_example_is_one_short_file():
    lines = readme_example().strip().splitlines()
    assert 30 <= len(lines) <= 50 and "@register_method(" in readme_example()


@pytest.mark.slow
def test_a_method_by_import_path_runs_isolated_distributed_and_is_tabulated(package,
                                                                            tmp_path):
    before = repository_state()
    listed = bench("list", "--methods", SPEC, path=package)
    assert re.search(rf"cosine-proto .*\[import path {re.escape(SPEC)}\]", listed)
    assert "mtl" in listed and "[built in]" in listed

    bench("run", "--methods", f"{SPEC},mtl", *SMOKE, "--out", tmp_path / "here", path=package)
    here = result(tmp_path / "here")
    assert here["status"] == "ok" and here["config"]["method"] == "cosine-proto"
    assert here["config"]["method_source"] == SPEC
    assert not here["native_is_unified"]  # both protocols: its own adapt, and unified
    assert set(here["test"]) == {"unified", "native"}
    mtl = json.loads(next((tmp_path / "here" / "runs").glob("mtl_glyphs_5w1s_smoke_seed0_*"))
                     .read_text())
    assert "method_source" not in mtl["config"]  # registered methods: records as before

    bench("run", "--methods", SPEC, *SMOKE, "--isolate", "--out", tmp_path / "isolated",
          path=package)
    isolated = result(tmp_path / "isolated")
    assert isolated["test"]["unified"]["accuracies"] == here["test"]["unified"]["accuracies"]

    bench("run", "--methods", SPEC, *SMOKE, "--out", tmp_path / "ddp", path=package,
          prefix=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    ddp = result(tmp_path / "ddp")
    assert ddp["status"] == "ok" and ddp["provenance"]["device_count"] == 2
    assert ddp["episode_hash"] == here["episode_hash"]

    # a recorded import path is imported only when asked: here, the method given again
    table = bench("table", tmp_path / "here", "--methods", SPEC, path=package)
    assert re.search(r"\| CosineProto \| conv4-32 \| native \| smoke \| \d", table)
    assert re.search(r"\| CosineProto \| conv4-32 \| unified \| smoke \| \d", table)
    assert "| MTL | conv4-32 | unified (= native) |" in table
    assert repository_state() == before


@pytest.mark.slow
def test_an_installed_entry_point_registers_the_method_everywhere(package, tmp_path):
    info = package / "cosine_plugin-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cosine-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[bridgebench.methods]\ncosine-proto = {SPEC}\n")
    try:
        listed = bench("list", path=package)
        assert "[entry point cosine-proto of cosine-plugin 0.1]" in listed
        bench("run", "--methods", "cosine-proto", *SMOKE, "--isolate", "--out", tmp_path,
              path=package)
        record = result(tmp_path)
        assert record["status"] == "ok" and "method_source" not in record["config"]
    finally:
        for file in info.iterdir():
            file.unlink()
        info.rmdir()
