"""``python -m bench``: see :mod:`bench.commands.main`."""
import sys

from bench.commands.main import main

if __name__ == "__main__":
    sys.exit(main())
