"""bench/diagnose.py's bookkeeping: results of two processes sharing one OUT are merged, and the report shows them."""

import argparse
import json
import sys

from lawr_ext import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import diagnose  # noqa: E402


def _args(out) -> argparse.Namespace:
    return argparse.Namespace(out=str(out), dataset="runs/datasets/d")


def _rate(successes: int, episodes: int) -> dict:
    return {"episodes": episodes, "successes": successes, "success_rate": successes / episodes,
            "success_ci95": [0.0, 1.0], "return_mean": 10.0 * successes}


def test_two_processes_sharing_out_keep_each_others_results(tmp_path):
    curve, other = diagnose.Diagnosis(_args(tmp_path)), diagnose.Diagnosis(_args(tmp_path))  # both read an empty OUT
    curve.cached("learning_curve", "1000/lawr", lambda: _rate(1, 4))
    other.cached("variants", "run/sphere", lambda: {"overrides": "planner.latent=sphere", **_rate(2, 4)})
    curve.cached("learning_curve", "3000/lawr", lambda: _rate(3, 4))
    saved = json.loads((tmp_path / "diagnose.json").read_text())
    assert set(saved["learning_curve"]) == {"1000/lawr", "3000/lawr"}
    assert saved["variants"]["run/sphere"]["successes"] == 2
    calls = []
    assert curve.cached("learning_curve", "1000/lawr", lambda: calls.append(1)) == _rate(1, 4) and not calls  # cached

    diagnose.write_markdown(saved, tmp_path)
    report = (tmp_path / "diagnose.md").read_text()
    assert "| run/sphere | 2/4 [0.00, 1.00] | 20 |" in report and "| 3000/lawr | 3/4 [0.00, 1.00] | 30 |" in report


def test_default_variants_are_valid_planner_settings():
    from lawr_ext.configs.train import load_train_config

    for spec in diagnose.DEFAULT_VARIANTS:
        name, _, overrides = spec.partition("=")
        cfg = load_train_config("Bimanual-Chunk", ["profile=cpu"] + overrides.split(","))
        assert cfg.planner.latent in ("ball", "sphere"), name
