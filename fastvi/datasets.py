"""Generated mixture data sets (public name kept; the code is ``fastvi.data.generate``)."""
from .data.generate import *            # noqa: F401,F403
from .data.generate import __all__      # noqa: F401
