"""``python -m bench.theory``: the same command as ``python -m bench theory``."""
from __future__ import annotations

import argparse
import sys

from bench.theory.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.theory",
        description="Reproduce Figure 1 of Wang, Zhao & Li (ICML 2021) from NTK/NNGP kernels.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
