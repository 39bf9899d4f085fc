"""Success-rate confidence intervals and the evaluation summary (JSON for machines, Markdown for people)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from lawr_ext.eval.rollout import Episode
from lawr_ext.utils.io import atomic_write_text

Z_95 = 1.959963984540054  # two-sided 95% standard-normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not degenerate at 0/n or n/n,
    which are exactly the rates a strong or a broken policy produces.
    """
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"wilson_interval needs 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    p = successes / trials
    z2n = z * z / trials
    center = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / trials + z2n / (4 * trials))
    return max(0.0, center - half), min(1.0, center + half)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


def _rates(episodes: Sequence[Episode]) -> dict:
    successes = sum(e.success for e in episodes)
    ret_mean, ret_std = _mean_std([e.ret for e in episodes])
    len_mean, len_std = _mean_std([e.length for e in episodes])
    return {
        "episodes": len(episodes),
        "successes": successes,
        "success_rate": successes / len(episodes),
        "success_ci95": list(wilson_interval(successes, len(episodes))),
        "return_mean": ret_mean, "return_std": ret_std,
        "length_mean": len_mean, "length_std": len_std,
        "physics_failures": sum(e.physics_failure for e in episodes),
        "objects_dropped": sum(e.object_dropped for e in episodes),
    }


def summarize(episodes: Sequence[Episode]) -> dict:
    """Overall rates plus a per-strategy breakdown when the env reported which strategy each episode used."""
    if not episodes:
        raise ValueError("summarize: no finished episodes to summarize")
    summary = _rates(episodes)
    strategies = sorted({e.strategy for e in episodes if e.strategy is not None})
    summary["per_strategy"] = {str(s): _rates([e for e in episodes if e.strategy == s]) for s in strategies}
    return summary


def markdown_summary(report: dict) -> str:
    """A short human-readable view of ``report`` (the summary plus whatever context the caller added)."""
    s = report["summary"]
    lo, hi = s["success_ci95"]
    lines = [f"# Evaluation: {report.get('task', '?')}", ""]
    lines += [f"- {k}: `{v}`" for k, v in report.get("context", {}).items()]
    lines += ["", "| episodes | success | 95% CI (Wilson) | return | length |", "|---|---|---|---|---|",
              f"| {s['episodes']} | {s['success_rate']:.3f} | [{lo:.3f}, {hi:.3f}] | "
              f"{s['return_mean']:.2f} ± {s['return_std']:.2f} | {s['length_mean']:.1f} ± {s['length_std']:.1f} |"]
    if s["physics_failures"]:
        lines += ["", f"{s['physics_failures']} episode(s) ended in a simulator blow-up (reset by the env, counted as failures)."]
    if s.get("objects_dropped"):  # reports written before this field existed lack it
        lines += ["", f"{s['objects_dropped']} episode(s) ended with an object knocked off the table."]
    if s["per_strategy"]:
        lines += ["", "| strategy | episodes | success | 95% CI | return |", "|---|---|---|---|---|"]
        for name, r in s["per_strategy"].items():
            label = "none (no object lifted)" if name == "-1" else name  # the env's "undecided" strategy id
            lines.append(f"| {label} | {r['episodes']} | {r['success_rate']:.3f} | "
                         f"[{r['success_ci95'][0]:.3f}, {r['success_ci95'][1]:.3f}] | {r['return_mean']:.2f} |")
    if report.get("support"):
        lines += ["", "Phase-3 support check: " + ", ".join(f"{k} = {v:.4g}" for k, v in report["support"].items())]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Atomically write ``eval.json`` and ``eval.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "eval.json", out_dir / "eval.md"
    atomic_write_text(json.dumps(report, indent=2) + "\n", json_path)
    atomic_write_text(markdown_summary(report), md_path)
    return json_path, md_path
