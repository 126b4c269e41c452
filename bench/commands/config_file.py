"""Config files: ``python -m bench run --config sweep.yaml`` (any subcommand that calls
:func:`add_config_argument`).

A config file is a YAML mapping of a subcommand's options to values, keyed by the long option
name without its dashes (``data-root`` or ``data_root``)::

    methods: [mtl, protonet]      # or "mtl,protonet", as on the command line
    dataset: glyphs
    shots: [1, 5]
    budget: quick
    hparam: {inner_lr: 0.01}      # a repeatable KEY=VALUE option: a mapping (or a list)
    no-progress: true             # a flag: true or false

:func:`apply_config_file` sets the subcommand's defaults from the file before the command line
is parsed, so a flag given on the command line overrides the file (a repeatable option adds to
it, the command line's entry last). Every value goes through the option's own argparse type
and choices (:meth:`argparse.ArgumentParser._get_values`), so a bad value gets the very message
the flag would give; an unknown key is one :class:`ConfigFileError` naming it and the valid
keys. :func:`resolved_options` is the inverse: the options of a parsed command as a mapping
that ``--config`` reads back to the same values (what ``bench run`` writes beside its results).
"""
from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from core.atomic import write_text_atomic

OPTION = "--config"


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file and what is wrong."""


class _NotHere(Exception):
    """The command line's ``--config`` could not be read; the real parser will say why."""


class _Peek(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _NotHere(message)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` (a subcommand) the ``--config FILE`` option that
    :func:`apply_config_file` reads."""
    parser.add_argument(OPTION, type=Path, default=None, metavar="FILE.yaml",
                        help="read options from this YAML file (keys: the long option names "
                             "without --, e.g. `shots: [1, 5]`); options on the command line "
                             "override it")


def apply_config_file(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Set ``parser``'s defaults from the ``--config`` file named in ``argv`` (when the
    subcommand ``argv`` names has that option), before ``parser.parse_args(argv)``.

    ``parser`` is a subcommand's parser, or a parser with subcommands (``argv[0]`` picks one).
    Returns ``argv`` (unchanged: the parser reads ``--config`` itself, so a parsed command
    records it). :class:`ConfigFileError` for a file that cannot be read or holds an unknown
    key or a bad value."""
    argv = list(argv)
    sub = subcommand(parser, argv[0]) if argv else None
    if sub is not None:
        apply_config_file(sub, argv[1:])
        return argv
    if OPTION not in parser._option_string_actions:
        return argv
    peek = _Peek(add_help=False)
    peek.add_argument(OPTION, type=Path, default=None)
    try:
        path = peek.parse_known_args(argv)[0].config
    except _NotHere:
        return argv
    if path is not None:
        set_defaults_from(parser, read_config_file(path), f"{OPTION} {path}")
    return argv


def subcommand(parser: argparse.ArgumentParser, name: str
               ) -> argparse.ArgumentParser | None:
    """The parser of subcommand ``name`` of ``parser`` (None: no such subcommand)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (empty for an empty file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigFileError(f"{OPTION} {path}: cannot read it "
                              f"({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{OPTION} {path}: not a text (UTF-8) file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigFileError(f"{OPTION} {path}: not valid YAML{where} ({what})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{OPTION} {path}: expected a mapping of option names to values "
                              f"(e.g. `budget: quick`), not a YAML {type(data).__name__}")
    return data


def option_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The config-file key of every option of ``parser`` (its long name without ``--``)."""
    keys = {}
    for action in parser._actions:  # argparse has no public list of a parser's actions
        names = [s for s in action.option_strings if s.startswith("--")]
        if names and names[0] not in ("--help", OPTION):
            keys[names[0][2:]] = action
    return keys


def set_defaults_from(parser: argparse.ArgumentParser, options: Mapping[Any, Any],
                      where: str) -> None:
    """Set ``parser``'s defaults from ``options`` (config-file keys and YAML values), each
    converted and checked as the command line would (``where``: how messages name the
    source). An option the file gives is no longer required on the command line."""
    keys = option_keys(parser)
    defaults = {}
    for raw_key, value in options.items():
        key = str(raw_key).replace("_", "-")
        action = keys.get(key)
        if action is None:
            close = difflib.get_close_matches(key, list(keys), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigFileError(f"{where}: unknown key {str(raw_key)!r}{hint}; valid keys: "
                                  f"{', '.join(sorted(keys))}")
        try:
            defaults[action.dest] = _converted(parser, action, value)
        except argparse.ArgumentError as error:
            raise ConfigFileError(f"{where}: {error}") from None
        action.required = False
    parser.set_defaults(**defaults)


def _converted(parser: argparse.ArgumentParser, action: argparse.Action, value: Any) -> Any:
    """``value`` as the option's parsed value: through its type function and choices, as
    argparse converts the command line's strings (:class:`argparse.ArgumentError` if bad)."""
    if isinstance(action, argparse._StoreConstAction):  # a flag: --force, --no-save-model
        if not isinstance(value, bool):
            raise argparse.ArgumentError(action, f"expected true or false, got {value!r}")
        return action.const if value else action.default
    if value is None:
        return _null(action)
    if value == [] and action.default == []:  # an empty list where the default is one
        return []
    if isinstance(action, argparse._AppendAction):
        items = [f"{k}={_text(v)}" for k, v in value.items()] if isinstance(value, dict) \
            else value if isinstance(value, list) else [value]
        return [parser._get_values(action, [_text(item)]) for item in items]
    if isinstance(value, dict):
        raise argparse.ArgumentError(action, f"expected a value or a list, not a mapping "
                                             f"({value!r})")
    if action.nargs in ("+", "*"):
        strings = [_text(v) for v in value] if isinstance(value, list) else [_text(value)]
    else:
        strings = [",".join(_text(v) for v in value) if isinstance(value, list)
                   else _text(value)]
    return parser._get_values(action, strings)


def _null(action: argparse.Action) -> Any:
    """``null`` in a config file: None where the option's default is None (unset) or where
    its type spells None as ``none`` (``--dropblock-ramp``); an error otherwise."""
    if action.default is None:
        return None
    if action.type is not None:
        try:
            if action.type("none") is None:
                return None
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            pass
    raise argparse.ArgumentError(action, "expected a value, not null")


def _text(value: Any) -> str:
    """A YAML scalar as the command line would spell it (JSON for non-strings)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def resolved_options(parser: argparse.ArgumentParser, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """Every option of ``parser`` as parsed into ``args`` (defaults, config file and command
    line resolved), keyed and spelled so that ``--config`` reads it back to the same values.
    An option left at a default its type cannot spell (``--dropblock-ramp``'s "the budget's
    own") is left out, which means the same."""
    options: dict[str, Any] = {}
    for key, action in option_keys(parser).items():
        if not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if isinstance(action, argparse._StoreConstAction):
            options[key] = value == action.const
        elif isinstance(action.default, bool) and value is action.default:
            continue
        elif isinstance(action, argparse._AppendAction) and value and \
                all(isinstance(v, tuple) and len(v) == 2 for v in value):
            options[key] = {str(k): _plain(v) for k, v in value}
        else:
            options[key] = _plain(value)
    return options


def _plain(value: Any) -> Any:
    """``value`` as YAML can write it (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def write_config_file(path: Path, options: Mapping[str, Any], header: Sequence[str] = ()
                      ) -> None:
    """Write ``options`` as YAML to ``path`` atomically, after ``header`` comment lines."""
    comments = "".join(f"# {line}\n" for line in header)
    body = yaml.safe_dump(dict(options), sort_keys=False, default_flow_style=None,
                          allow_unicode=True)
    write_text_atomic(path, comments + body)
