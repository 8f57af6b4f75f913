"""``python -m fastvi.cli``: the ``fastvi`` command (the crash and resume tests run it so)."""
import sys

from .main import main

sys.exit(main())
