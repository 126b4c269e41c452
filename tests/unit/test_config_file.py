"""Issue 27, item 3: ``--config FILE.yaml`` reads the same options as the flags (flags
override), with the flags' own messages for bad values and one line for an unknown key; the
options a sweep resolved read back to the same values; provenance's command can be pasted
back."""
from pathlib import Path

import pytest

from bench.common import command_line
from bench.commands.main import build_parser, main
from bench.commands.config_file import (apply_config_file, resolved_options, subcommand,
                               write_config_file)

FLAGS = ["run", "--methods", "mtl,protonet", "--dataset", "glyphs", "--shots", "1,5",
         "--seeds", "0,1", "--budget", "smoke", "--dropblock-ramp", "never", "--hparam",
         "scale_init=2", "--hparam", "learn_scale=false", "--no-save-model", "--force",
         "--logreg-c", "0.5", "--out", "some results", "--slurm-option", "account=proj",
         "--log", "csv"]
YAML = """\
methods: [mtl, protonet]
dataset: glyphs
shots: [1, 5]
seeds: 0,1
budget: smoke
dropblock_ramp: never
hparam: {scale_init: 2, learn_scale: false}
no-save-model: true
force: true
logreg-c: 0.5
out: some results
slurm-option: {account: proj}
log: [csv]
"""


def parse(argv: list[str]):
    parser = build_parser()
    apply_config_file(parser, argv)
    args = vars(parser.parse_args(argv))
    args.pop("config", None)
    return args


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return str(path)


def test_a_config_file_reads_as_the_same_flags(tmp_path):
    assert parse(["run", "--config", write(tmp_path, YAML)]) == parse(FLAGS)


def test_flags_override_the_file_and_repeatable_options_add_to_it(tmp_path):
    path = write(tmp_path, YAML)
    args = parse(["run", f"--config={path}", "--budget", "quick", "--hparam", "scale_init=3"])
    assert args["budget"] == "quick" and args["seeds"] == [0, 1]
    assert dict(args["hparam"]) == {"scale_init": 3, "learn_scale": False}


def test_the_resolved_options_read_back_to_the_same_values(tmp_path):
    parser = build_parser()
    args = parser.parse_args(FLAGS + ["--jobs", "auto", "--data-root", "/d"])
    path = tmp_path / "sweeps" / "resolved.yaml"
    write_config_file(path, resolved_options(subcommand(parser, "run"), args), ["a header"])
    assert path.read_text().startswith("# a header\n")
    expected = vars(args)
    expected.pop("config")
    assert parse(["run", "--config", str(path)]) == expected
    plain = parser.parse_args(["run", "--methods", "mtl", "--dataset", "glyphs"])
    write_config_file(path, resolved_options(subcommand(parser, "run"), plain))
    assert "dropblock-ramp" not in path.read_text()  # unset: the budget's own
    assert parse(["run", "--config", str(path)])["dropblock_ramp"] is False


def test_eval_reads_a_config_file_too(tmp_path):
    path = write(tmp_path, "ways: 10\nprotocol: native\nlogreg-c: 0.1,1\n")
    args = parse(["eval", "m.pt", "--config", path])
    assert (args["ways"], args["protocol"], args["logreg_c"]) == (10, ["native"], "0.1,1")


def test_an_unknown_key_is_one_error_line_naming_it_and_the_valid_keys(tmp_path, capsys):
    path = write(tmp_path, "methods: mtl\ndataset: glyphs\nbudgte: quick\n")
    assert main(["run", "--config", path]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --config {path}: unknown key 'budgte'")
    assert "did you mean 'budget'?" in err[0] and "valid keys: allow-nonstandard, " \
        "assume-epochs, backbone, budget," in err[0]


@pytest.mark.parametrize("key, value, flag", [
    ("budget", "fast", "--budget"), ("seeds", "[0, x]", "--seeds"), ("ways", "five", "--ways"),
    ("logreg-c", "-1", "--logreg-c"), ("dropblock-ramp", "soon", "--dropblock-ramp")])
def test_a_bad_value_gets_the_flags_own_message(tmp_path, capsys, key, value, flag):
    path = write(tmp_path, f"methods: mtl\ndataset: glyphs\n{key}: {value}\n")
    assert main(["run", "--config", path]) == 2
    from_file = capsys.readouterr().err.splitlines()
    flag_value = value.strip("[]").replace(" ", "")
    with pytest.raises(SystemExit) as stopped:
        main(["run", "--methods", "mtl", "--dataset", "glyphs", flag, flag_value])
    assert stopped.value.code == 2
    from_flag = capsys.readouterr().err.splitlines()[-1]
    assert len(from_file) == 1
    assert from_file[0] == f"error: --config {path}: " + from_flag.split(" error: ", 1)[1]


@pytest.mark.parametrize("text, problem", [
    ("force: 1\n", "argument --force: expected true or false, got 1"),
    ("ways: null\n", "argument --ways: expected a value, not null"),
    ("[1, 2]\n", "expected a mapping of option names to values"),
    ("methods: [mtl\n", "not valid YAML at line 2"),
])
def test_other_bad_files_are_one_line(tmp_path, capsys, text, problem):
    assert main(["run", "--config", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and problem in err[0]


def test_the_recorded_command_can_be_pasted_back(monkeypatch):
    from bench.common import provenance

    monkeypatch.setattr("sys.argv", ["/somewhere/bench/__main__.py"])
    with command_line.remembered(["run", "--out", "my results", "--methods", "mtl"]):
        assert provenance.collect(__import__("torch").device("cpu"))["command"] == \
            "python -m bench run --out 'my results' --methods mtl"
    monkeypatch.setattr("sys.argv", ["/venv/bin/bridgebench"])
    assert command_line.pasteable(["list"]) == "bridgebench list"
