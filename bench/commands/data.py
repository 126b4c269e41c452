"""``python -m bench data {prepare,verify}``: convert a dataset's files once into the prepared
uint8 cache (:mod:`datasets.cache`), and recheck it later.

    python -m bench data prepare mini --root ~/data/mini-imagenet
    python -m bench data prepare cifar-fs --root ~/data/cifar --download
    python -m bench data prepare fc100 --root ./tiny-fc100 --allow-nonstandard
    python -m bench data verify mini --root ~/data/mini-imagenet

``prepare`` reads whatever layout the files are in, refuses a split that is not the standard
one unless ``--allow-nonstandard``, and writes ``<root>/.bridgebench-cache/<dataset>/`` (or
``--cache DIR`` / ``$BRIDGEBENCH_CACHE``). ``--download`` exists where a stable source does
(torchvision's CIFAR-100 for CIFAR-FS and FC100, torchvision's Omniglot); for the others it
prints where to get the files and every layout the readers accept. ``verify`` recomputes the
sha256 of the cache arrays and of every source file still present; exit status 1 when
anything changed.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from core.registry import UnknownNameError

HELP = "prepare or verify a dataset's files (prepare/verify)"

if TYPE_CHECKING:
    from datasets.cache import DatasetSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare`` and ``verify`` sub-commands to the ``data`` parser."""
    sub = parser.add_subparsers(dest="data_command", required=True)
    prepare = sub.add_parser(
        "prepare", help="convert a dataset's files once into the prepared uint8 cache",
        description="Read a dataset's files (any accepted layout), check the split and write "
                    "the memory-mapped uint8 cache with a manifest.json.")
    prepare.add_argument("dataset", help="a dataset with files (see `python -m bench list`)")
    _add_location(prepare)
    prepare.add_argument("--download", action="store_true",
                         help="fetch the files first where a stable source exists "
                              "(torchvision's CIFAR-100 and Omniglot); otherwise say where to "
                              "get them")
    prepare.add_argument("--allow-nonstandard", action="store_true",
                         help="accept a split that differs from the standard one (e.g. a "
                              "subset); the manifest and every result's source say so")
    prepare.add_argument("--force", action="store_true", help="rebuild an existing cache")
    verify = sub.add_parser("verify", help="recheck a prepared cache and its source files",
                            description="Recompute the sha256 of the cache arrays and of the "
                                        "source files; exit status 1 if anything changed.")
    verify.add_argument("dataset")
    _add_location(verify)


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", "--data-root", dest="root", type=Path, default=None,
                        help="folder with the dataset's files (default: $BRIDGEBENCH_DATA/"
                             "<dataset> if it exists, else $BRIDGEBENCH_DATA; default ~/data)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: $BRIDGEBENCH_CACHE, else "
                             "<root>/.bridgebench-cache)")


def _spec(name: str) -> DatasetSpec:
    # here, not at the top: datasets imports torch
    from datasets.cache import get_spec

    return get_spec(name)


def _where_to_get(spec: DatasetSpec) -> str:
    lines = [f"{spec.title} has no stable download source; get the files yourself:"]
    lines += [f"  - {s}" for s in spec.where_to_get]
    lines.append("Accepted layouts (any one of):")
    lines += [f"  - {a}" for a in spec.accepted]
    return "\n".join(lines)


def _summary(manifest: dict[str, Any]) -> str:
    parts = [f"{name} {entry['n_classes']} classes / {entry['images']} images"
             for name, entry in manifest["splits"].items()]
    return "; ".join(parts)


def cmd_prepare(args: argparse.Namespace) -> int:
    # here, not at the top: datasets imports torch
    from datasets.cache import (CACHE_ENV, cache_folder, check_standard, read_manifest,
                                resolve_root, stale_problems, write_cache)

    spec = _spec(args.dataset)
    root = resolve_root(spec, args.root)
    if args.download:
        if spec.download is None:
            print(f"error: {_where_to_get(spec)}", file=sys.stderr)
            return EXIT_USAGE
        spec.download(root, print)
    folder = cache_folder(spec.name, root, args.cache)
    manifest = read_manifest(folder)
    if manifest is not None and not args.force:
        stale = stale_problems(folder, manifest, root)
        if not stale:
            print(f"{spec.title} is already prepared in {folder} ({_summary(manifest)}); "
                  f"--force rebuilds it, `python -m bench data verify {spec.name}` rechecks it")
            return EXIT_OK
        print(f"the cache in {folder} is stale ({'; '.join(stale)}); rebuilding it")
    started = time.perf_counter()
    located = spec.locate(root)
    print(f"preparing {spec.title} from {located.layout} in {located.folder} into {folder}")
    splits = located.read()
    problems = check_standard(spec, located, splits, args.allow_nonstandard, root)
    for problem in problems:
        print(f"warning: non-standard split accepted: {problem}")
    manifest = write_cache(spec, located, splits, root, folder, problems, log=print)
    total = sum(math.prod(e["shape"]) for e in manifest["splits"].values())
    print(f"prepared {spec.title}: {_summary(manifest)}; {total / 1e9:.2f} GB in {folder} "
          f"({time.perf_counter() - started:.0f} s)")
    if args.cache is not None:
        print(f"note: the cache is outside the data folder; set {CACHE_ENV}={args.cache} so "
              f"`python -m bench run` finds it")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    # here, not at the top: datasets imports torch
    from datasets.cache import verify_cache

    spec = _spec(args.dataset)
    checks = verify_cache(spec, args.root, args.cache)
    for check in checks:
        print(check)
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"{spec.title}: {len(failed)} of {len(checks)} checks FAILED; rebuild with "
              f"`python -m bench data prepare {spec.name} --force` after restoring the files")
        return EXIT_FAILED
    print(f"{spec.title}: all {len(checks)} checks passed")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run ``bench data <command>``; returns the exit status (0 ok, 1 verify failed, 2 error)."""
    # here, not at the top: datasets imports torch
    from datasets.base import DatasetError

    try:
        if args.data_command == "prepare":
            return cmd_prepare(args)
        if args.data_command == "verify":
            return cmd_verify(args)
    except (DatasetError, UnknownNameError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled data command {args.data_command}")
