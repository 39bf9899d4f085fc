"""Published success rates on OGBench's cube tasks, put beside lawr's own rows by ``scripts/benchmark.py``.

Each figure names the paper's method, what it averages over and its source; it is keyed by the lawr method that
implements the same algorithm (``fql`` is FQL on action chunks, i.e. QC-FQL; ``qc`` is QC as published, its critic
trained by the best-of-N backup; ``best_of_n`` only borrows QC's acting rule over L-AWR's in-sample critic, so it
gets no published figure; ``gaussian_awr`` is the AWR/IQL actor on chunks). The papers train for
1M gradient steps on OGBench's 1M-transition datasets (1000 episodes x 1000 steps), 50 evaluation episodes per
task; lawr's rows say what they were measured at.
"""

from __future__ import annotations

from lawr_ext.tasks.ogbench import ogbench_name

FQL_PAPER = "FQL paper (Park, Li, Levine 2025), 5-task average, 1M steps"
QC_PLOTS = "QC's released plot data (Li, Zhou, Levine 2025), task2, 1M offline steps"

#: OGBench dataset names -> lawr method -> [(paper's method, success rate, source)]
FAMILY_AVERAGES = {
    "cube-single-play": {"fql": [("FQL", 0.96, FQL_PAPER)], "gaussian_awr": [("IQL", 0.83, FQL_PAPER)]},
    "cube-double-play": {"fql": [("FQL", 0.29, FQL_PAPER)], "gaussian_awr": [("IQL", 0.07, FQL_PAPER)]},
}
TASK2 = {
    "cube-double-play": {"fql": [("QC-FQL", 0.45, QC_PLOTS), ("FQL", 0.43, QC_PLOTS)],
                         "qc": [("QC", 0.72, QC_PLOTS)]},
}


def published(task: str) -> dict[str, list[tuple[str, float, str]]]:
    """The published figures for ``task`` (an ``ogbench:`` id) by lawr method; a family's 5-task averages are
    listed for each of its tasks, task2's own figures (OGBench's default singletask goal) for task2 only."""
    name = ogbench_name(task)
    family = name.split("-singletask")[0]
    is_task2 = name.endswith("-singletask-v0") or name.endswith("-singletask-task2-v0")
    figures: dict[str, list] = {}
    for table in (TASK2 if is_task2 else {}, FAMILY_AVERAGES):
        for method, rows in table.get(family, {}).items():
            figures.setdefault(method, []).extend(rows)
    return figures
