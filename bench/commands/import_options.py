"""``--allow-import`` and ``--methods`` of the commands that read files from elsewhere
(``bench table``, ``bench eval``): a recorded import path is imported only when asked."""
from __future__ import annotations

import argparse

from bench.common.arg_types import name_list


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--allow-import`` and ``--methods`` to ``parser``."""
    parser.add_argument("--allow-import", action="store_true",
                        help="import the methods that result and model files name by import "
                             "path (their recorded method_source); without it, no file's "
                             "contents import code")
    parser.add_argument("--methods", type=name_list, default=[], metavar="PKG.MOD:CLASS,...",
                        help="import these methods (import paths) first, allowing the files "
                             "that record them")
