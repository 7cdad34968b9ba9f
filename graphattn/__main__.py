"""``python -m graphattn``: the same command as the ``graphattn`` console script (graphattn.cli)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
