"""Reports of a run folder, read from its records alone (never by re-running methods).

One room per concern: ``rundata`` (loading a run folder, its compatibility code, folds pooled), ``stats``
(bootstrap intervals over images, and over seeds x images; the paired comparisons' one statistic, a t
reference on the trained units; Holm), ``tables`` (the numeric tables, ``compare_methods`` for every paired
verdict, and the CLI's short table), ``compute`` (accuracy against training compute on a budget axis), ``prose`` (the automatic sentences), ``render`` (Markdown and HTML),
``verdict`` (what won, by how much, how sure, against the floor), ``figures`` and ``document`` (the report's content and ``write_report``).
"""

from segbench.report.document import MAX_GRID_METHODS, write_report
from segbench.report.format import markdown_table
from segbench.report.rundata import RunData, headline_columns
from segbench.report.tables import ALPHA, brief_table, paired_table, per_class_iou_table, scores_table, select_grid_images

__all__ = [
    "ALPHA",
    "MAX_GRID_METHODS",
    "RunData",
    "brief_table",
    "headline_columns",
    "markdown_table",
    "paired_table",
    "per_class_iou_table",
    "scores_table",
    "select_grid_images",
    "write_report",
]
