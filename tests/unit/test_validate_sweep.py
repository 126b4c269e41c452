"""Bad input is refused before anything trains (issue 11): one validation pass over the whole
sweep (ranges, method hyperparameters through their declarations, episode shapes against the
splits, a results folder that is a file), one line per problem, exit 2, nothing written; and
repeated list entries are collapsed. No test here trains."""
from dataclasses import replace

import pytest
import torch

from bench.commands.main import main
from bench.common.config import RunConfig, resolve_budget
from bench.sweep.validation import (MAX_SEED, argument_problems, collapse_duplicates,
                                  config_problems, out_problem, split_problem, unique_runs)
from datasets.base import ClassSplit, FewShotDataset


def split(name: str, sizes: list[int]) -> ClassSplit:
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    images = torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8)
    return ClassSplit(name, images, labels, tuple(f"{name}{k}" for k in range(len(sizes))))


def tiny(train: list[int], val: list[int], test: list[int]) -> FewShotDataset:
    return FewShotDataset("glyphs", split("train", train), split("val", val),
                          split("test", test), (0.5,), (0.25,))


def test_every_bad_number_is_one_line():
    assert argument_problems(1, [0, 1, 0], 0, 0, [-1, 0, MAX_SEED + 1]) == [
        "--ways 1: must be at least 2 (an episode must tell classes apart)",
        "--shots 0: must be at least 1 (support images per class)",
        "--queries 0: must be at least 1 (test query images per class; accuracy is measured "
        "on them)",
        "--episodes 0: must be at least 1 (test episodes)",
        f"--seeds -1: must be between 0 and {MAX_SEED} (torch's seed range)",
        f"--seeds {MAX_SEED + 1}: must be between 0 and {MAX_SEED} (torch's seed range)",
    ]
    assert argument_problems(2, [1, 5], 1, 1, [0, MAX_SEED]) == []


def test_split_problem_is_the_samplers_rule():
    s = split("val", [6, 6, 3])
    assert split_problem(s, "x", 3, 1, 2) is None  # every class has 3 images
    assert split_problem(s, "x", 4, 1, 1) == \
        "x: 4-way episodes need 4 classes, but the val split has 3"
    assert split_problem(s, "x", 3, 1, 3) == (
        "x: 3-way episodes of 1 shot(s) + 3 queries need 3 classes with at least 4 images "
        "each, but only 2 of the val split's 3 classes have that many (largest: 6 images)")
    assert split_problem(s, "x", 2, 1, 5) is None  # two classes of 6 suffice for 2-way


def test_a_run_is_checked_on_all_three_splits_with_its_budgets_shapes():
    budget = resolve_budget("smoke", "mtl", "glyphs", 1)  # trains 2 shots + 3 queries
    config = RunConfig("mtl", "glyphs", 3, 1, 0, budget, queries=4, episodes=5)
    data = tiny(train=[4] * 5, val=[6] * 2, test=[5] * 3)
    problems = config_problems(config, data)
    assert len(problems) == 2, problems
    assert problems[0].startswith("glyphs, mtl's training episodes (budget "
                                  "'smoke'): 3-way episodes of 2 shot(s) + 3 queries need 3 "
                                  "classes with at least 5 images")
    assert problems[1] == ("glyphs, validation episodes: 3-way episodes need 3 "
                           "classes, but the val split has 2")
    fits = tiny(train=[5] * 3, val=[5] * 3, test=[5] * 3)
    assert config_problems(config, fits) == []
    # the budget's validation shots, not the test shots, shape validation episodes
    wide = replace(config, budget=replace(budget, val_shots=2))
    assert "validation episodes: 3-way episodes of 2 shot(s) + 4 queries" in \
        config_problems(wide, fits)[0]


def test_a_method_that_trains_on_image_batches_needs_images_not_episodes():
    budget = resolve_budget("smoke", "rfs", "glyphs", 1)  # batches of 50 one-image tasks
    config = RunConfig("rfs", "glyphs", 5, 1, 0, budget, queries=2)
    few = tiny(train=[3] * 10, val=[3] * 5, test=[3] * 5)  # 3 images a class: no 5-shot task
    assert config_problems(config, few) == [
        f"glyphs, rfs's training (budget 'smoke'): batches of {budget.meta_batch} images, but "
        "the train split holds 30"]
    assert config_problems(config, tiny([3] * 20, [3] * 5, [3] * 5)) == []


def test_hyperparameters_and_budget_fields_are_checked_through_their_declarations():
    budget = resolve_budget("smoke", "maml", "glyphs", 1)
    bad = replace(budget, hparams={**budget.hparams, "inner_lr": "abc", "train_steps": 0},
                  backbone="conv9", meta_batch=0)
    config = RunConfig("maml", "glyphs", 2, 1, 0, bad, queries=1)
    problems = config_problems(config, tiny([9] * 2, [9] * 2, [9] * 2))
    assert problems[0].startswith("method 'maml': hyperparameter inner_lr must be a number > 0,"
                                  ' got "abc"; train_steps must be an integer >= 1, got 0')
    assert problems[1].startswith("--backbone 'conv9': unknown; valid backbones: resnet12")
    assert problems[2] == ("budget 'smoke' of maml on glyphs: meta_batch is 0, must be at "
                           "least 1")


def test_a_results_folder_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert out_problem(blocker) == f"--out {blocker} is not writable: {blocker} is a file, " \
                                   "not a folder"
    assert out_problem(blocker / "sub") == f"--out {blocker / 'sub'} is not writable: " \
                                           f"{blocker} is a file, not a folder"
    assert out_problem(tmp_path / "new" / "deeper") is None


def test_repeats_collapse_with_a_note():
    assert collapse_duplicates([0, 1, 0, 0], "--seeds") == ([0, 1],
                                                            "note: --seeds repeats 0, 0; each "
                                                            "is done once")
    assert collapse_duplicates([1, 5], "--shots") == ([1, 5], None)
    spelled = [("mtl", "mtl"), ("MTL", "mtl")]
    assert collapse_duplicates(spelled, "--methods", key=lambda p: p[1], show=lambda p: p[0]) \
        == ([("mtl", "mtl")], "note: --methods repeats MTL; each is done once")
    config = RunConfig("mtl", "glyphs", 5, 1, 0, resolve_budget("smoke", "mtl", "glyphs", 1))
    assert unique_runs([config, replace(config)]) == ([config], "note: the sweep repeats "
                                                      f"{config.key}; each is done once")


SWEEP = ["run", "--methods", "mtl", "--dataset", "glyphs", "--budget", "smoke", "--episodes",
         "20", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("args, expect", [
    (["--episodes", "0"], ["--episodes 0: must be at least 1"]),
    (["--queries", "0"], ["--queries 0: must be at least 1"]),
    (["--queries", "-1"], ["--queries -1: must be at least 1"]),
    (["--shots", "0,1,0"], ["--shots 0: must be at least 1"]),
    (["--ways", "1"], ["--ways 1: must be at least 2"]),
    (["--seeds", "-1"], ["--seeds -1: must be between 0 and"]),
    (["--ways", "1000"], ["training episodes (budget 'smoke'): 1000-way episodes need 1000 "
                          "classes, but the train split has 256",
                          "validation episodes: 1000-way episodes need 1000 classes, but the "
                          "val split has 64",
                          "test episodes: 1000-way episodes need 1000 classes, but the test "
                          "split has 128"]),
    (["--queries", "30"], [f"{which} episodes: 5-way episodes of {shots} shot(s) + 30 queries "
                           f"need 5 classes with at least {shots + 30} images each, but only 0 "
                           f"of the {split} split's {n} classes"
                           for shots in (1, 5) for which, split, n in
                           (("validation", "val", 64), ("test", "test", 128))]),
    (["--methods", "maml", "--hparam", "inner_lr=abc"],
     ['method \'maml\': hyperparameter inner_lr must be a number > 0, got "abc"']),
    (["--backbone", "conv9"], ["--backbone 'conv9': unknown"]),
])
def test_bad_sweeps_exit_2_before_anything_is_written(args, expect, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*SWEEP, "--shots", "1,5", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1].endswith("problem(s) with this sweep. Nothing was run or written.")
    assert len(lines) == len(expect) + 1, err
    for line, want in zip(lines, expect):
        assert line.startswith("error: ") and want in line, err
    assert not out.exists()


def test_all_problems_of_a_sweep_at_once(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main([*SWEEP, "--ways", "1", "--shots", "0,1", "--queries", "0", "--seeds", "0,-2",
                 "--methods", "mtl,maml", "--hparam", "inner_lr=-1", "--out", str(blocker)])
    assert code == 2
    err = capsys.readouterr().err
    for want in ("--ways 1", "--shots 0", "--queries 0", "--seeds -2", "is a file, not a folder",
                 "method 'mtl' has no hyperparameter 'inner_lr'",
                 "method 'maml': hyperparameter inner_lr must be a number > 0, got -1"):
        assert want in err, err
    assert "7 problem(s)" in err
