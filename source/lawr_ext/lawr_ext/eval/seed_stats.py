"""Statistics over training seeds, as the field reports few-run RL results (Agarwal et al. 2021, "Deep RL at the
Edge of the Statistical Precipice"; the ``rliable`` library's definitions, reimplemented in numpy).

A benchmark cell is one (task, seed, method): one training run, evaluated on some episodes. Pooling every seed's
episodes into one binomial interval counts episodes, not runs, and so hides how much the result moves from one
training seed to the next. Here the unit is the run:

    per seed        its success rate with the Wilson interval of its own episodes
    mean, IQM       over the runs: the mean, and the interquartile mean (the mean of the middle 50% of the runs,
                    ``scipy.stats.trim_mean(x, 0.25)``: with fewer than 4 runs nothing is cut and it is the mean)
    95% CI          percentile interval of the statistic under the stratified bootstrap: the runs are resampled
                    with replacement within each task (stratum), never across tasks
    P(X > Y)        probability of improvement: for each task, the chance that a run of X scores above a run of Y
                    (ties count half; the Mann-Whitney U statistic over n_x * n_y), averaged over the tasks; its
                    CI resamples X's and Y's runs independently within each task

One seed gives no spread to resample: then the CI is that seed's Wilson interval (``ci95_method`` says which).
The bootstrap draws from a fixed seed, so a rerun on the same cells writes the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import trim_mean

from lawr_ext.eval.metrics import wilson_interval

CONFIDENCE = 0.95
BOOTSTRAP_REPS = 50_000          # rliable's default number of bootstrap replicates
BOOTSTRAP_SEED = 0
IQM_CUT = 0.25                   # cut from each end: the interquartile mean


def _strata(strata: Sequence[Sequence[float]], what: str) -> list[np.ndarray]:
    arrays = [np.asarray(s, dtype=float) for s in strata]
    if not arrays or any(a.ndim != 1 or a.size == 0 for a in arrays):
        raise ValueError(f"{what}: needs at least one task with at least one run's score, got {strata!r}")
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"{what}: scores must be finite, got {strata!r}")
    return arrays


def _mean(samples: list[np.ndarray]) -> np.ndarray:
    """Mean over each task's runs, then over the tasks; the runs lie on the last axis."""
    return np.mean([s.mean(axis=-1) for s in samples], axis=0)


def _iqm(samples: list[np.ndarray]) -> np.ndarray:
    """Interquartile mean of every task's runs together (rliable's IQM over the runs x tasks matrix)."""
    return trim_mean(np.concatenate(samples, axis=-1), IQM_CUT, axis=-1)


STATISTICS = {"mean": _mean, "iqm": _iqm}


def point(strata: Sequence[Sequence[float]], statistic: str = "mean") -> float:
    """``statistic`` ("mean" or "iqm") of the runs' scores, one sequence per task."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic: expected one of {tuple(STATISTICS)}, got {statistic!r}")
    return float(STATISTICS[statistic](_strata(strata, statistic)))


def _resample(strata: list[np.ndarray], rng: np.random.Generator, reps: int) -> list[np.ndarray]:
    return [s[rng.integers(0, s.size, size=(reps, s.size))] for s in strata]


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_ci(strata: Sequence[Sequence[float]], statistic: str = "mean", reps: int = BOOTSTRAP_REPS,
                 confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> list[float]:
    """Percentile interval of ``statistic`` under the stratified bootstrap (runs resampled within each task)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic: expected one of {tuple(STATISTICS)}, got {statistic!r}")
    arrays = _strata(strata, "bootstrap_ci")
    rng = np.random.default_rng(seed)
    return _interval(STATISTICS[statistic](_resample(arrays, rng, reps)), confidence)


def _improvement(x: list[np.ndarray], y: list[np.ndarray]) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per task over all pairs of runs, averaged over tasks; runs on the last axis."""
    per_task = [((a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :])).mean(axis=(-2, -1))
                for a, b in zip(x, y)]
    return np.mean(per_task, axis=0)


def probability_of_improvement(x: Sequence[Sequence[float]], y: Sequence[Sequence[float]],
                               reps: int = BOOTSTRAP_REPS, confidence: float = CONFIDENCE,
                               seed: int = BOOTSTRAP_SEED) -> dict:
    """P(X > Y) of method X's runs over method Y's (one sequence of run scores per task, the same tasks in the same
    order) and its stratified-bootstrap interval; with one run each on every task the interval is the point."""
    xs, ys = _strata(x, "probability_of_improvement (x)"), _strata(y, "probability_of_improvement (y)")
    if len(xs) != len(ys):
        raise ValueError(f"probability_of_improvement: x has {len(xs)} tasks, y has {len(ys)}")
    rng = np.random.default_rng(seed)
    values = _improvement(_resample(xs, rng, reps), _resample(ys, rng, reps))
    return {"probability": float(_improvement(xs, ys)), "ci95": _interval(values, confidence)}


def over_seeds(successes: Sequence[int], episodes: Sequence[int]) -> dict:
    """One (task, method)'s runs: per-seed rates and Wilson intervals, the mean and IQM over seeds with their
    bootstrap intervals (Wilson's, of the one seed, when there is only one)."""
    if len(successes) != len(episodes) or not successes:
        raise ValueError(f"over_seeds: needs one success count per seed's episode count, got {successes}, {episodes}")
    rates = [s / n for s, n in zip(successes, episodes)] if all(n > 0 for n in episodes) else None
    if rates is None:
        raise ValueError(f"over_seeds: every seed needs at least one episode, got {episodes}")
    per_seed_ci = [list(wilson_interval(s, n)) for s, n in zip(successes, episodes)]
    stats = {"per_seed_success": rates, "per_seed_ci95": per_seed_ci,
             "success_mean": point([rates]), "success_iqm": point([rates], "iqm")}
    if len(rates) > 1:
        stats |= {"success_mean_ci95": bootstrap_ci([rates]), "success_iqm_ci95": bootstrap_ci([rates], "iqm"),
                  "ci95_method": "stratified bootstrap over seeds"}
    else:
        stats |= {"success_mean_ci95": per_seed_ci[0], "success_iqm_ci95": per_seed_ci[0],
                  "ci95_method": "Wilson (one seed)"}
    return stats
