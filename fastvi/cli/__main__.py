"""``python -m fastvi.cli``: the ``fastvi`` command (the crash and resume tests run it so)."""
import sys

from .main import main

if __name__ == "__main__":      # not again in a process that multiprocessing spawns
    sys.exit(main())
