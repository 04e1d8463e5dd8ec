"""Reports of a run folder: tables, statistics, prose, figures, Markdown and HTML."""

from segbench.report.core import *  # noqa: F401,F403
from segbench.report.core import __all__  # noqa: F401
