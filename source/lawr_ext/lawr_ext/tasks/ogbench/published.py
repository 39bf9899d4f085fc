"""Published success rates on OGBench's cube tasks, put beside lawr's own rows by ``scripts/benchmark.py``.

Each figure names the paper's method, what it averages over and its source; it is keyed by the lawr method that
implements the same algorithm (``fql`` is FQL on action chunks, i.e. QC-FQL; ``qc`` is QC as published, its critic
trained by the best-of-N backup; ``best_of_n`` only borrows QC's acting rule over L-AWR's in-sample critic, so it
gets no published figure; ``gaussian_awr`` is the AWR/IQL actor on chunks; ``lps`` is LPS with its own critic);
the strongest methods lawr does not implement are listed under ``OTHERS``. The papers train for
1M gradient steps on OGBench's 1M-transition datasets (1000 episodes x 1000 steps), 50 evaluation episodes per
task; lawr's rows say what they were measured at. LPS's figures are read off the bar chart of its project page
(the page gives no numbers), Value Flows' from the table image of its project page.
"""

from __future__ import annotations

from lawr_ext.tasks.ogbench import ogbench_name
from lawr_ext.tasks.registry import PUBLISHED_OTHERS as OTHERS

FQL_PAPER = "FQL paper (Park, Li, Levine 2025), 5-task average, 1M steps"
QC_PLOTS = "QC's released plot data (Li, Zhou, Levine 2025), task2, 1M offline steps"
QC_PLOTS_AVERAGE = "QC's released plot data (Li, Zhou, Levine 2025), 5-task average, 1M offline steps"
LPS_CHART = "LPS project page, read off its bar chart (about), 5-task average, 1M steps, chunks of 5"
VALUE_FLOWS = "Value Flows project page table (arXiv 2510.07650), 8 seeds, 1M steps"

#: OGBench dataset names -> lawr method -> [(paper's method, success rate, source)]
FAMILY_AVERAGES = {
    "cube-single-play": {"fql": [("FQL", 0.96, FQL_PAPER), ("QC-FQL", 0.99, LPS_CHART)],
                         "gaussian_awr": [("IQL", 0.83, FQL_PAPER)], "lps": [("LPS", 0.95, LPS_CHART)]},
    "cube-double-play": {"fql": [("QC-FQL", 0.42, QC_PLOTS_AVERAGE), ("FQL", 0.32, QC_PLOTS_AVERAGE),
                                 ("FQL", 0.29, FQL_PAPER)],
                         "gaussian_awr": [("IQL", 0.07, FQL_PAPER)], "qc": [("QC", 0.66, QC_PLOTS_AVERAGE)],
                         "lps": [("LPS", 0.41, LPS_CHART)],
                         OTHERS: [("Value Flows", 0.69, VALUE_FLOWS + ", 5-task average"),
                                  ("BFN: best-of-N without chunks, own critic", 0.67, QC_PLOTS_AVERAGE)]},
}
TASK2 = {
    "cube-double-play": {"fql": [("QC-FQL", 0.45, QC_PLOTS), ("FQL", 0.43, QC_PLOTS)],
                         "qc": [("QC", 0.72, QC_PLOTS)],
                         OTHERS: [("BFN: best-of-N without chunks, own critic", 0.78, QC_PLOTS),
                                  ("Value Flows", 0.76, VALUE_FLOWS + ", task2")]},
}


def published(task: str) -> dict[str, list[tuple[str, float, str]]]:
    """The published figures for ``task`` (an ``ogbench:`` id) by lawr method (``OTHERS``: methods lawr does not
    implement); task2's own figures (OGBench's default singletask goal) for task2 only, then the family's 5-task
    averages for each of its tasks."""
    name = ogbench_name(task)
    family = name.split("-singletask")[0]
    is_task2 = name.endswith("-singletask-v0") or name.endswith("-singletask-task2-v0")
    figures: dict[str, list] = {}
    for table in (TASK2 if is_task2 else {}, FAMILY_AVERAGES):
        for method, rows in table.get(family, {}).items():
            figures.setdefault(method, []).extend(rows)
    return figures
