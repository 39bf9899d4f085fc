"""The stage registry: a stage inserted anywhere changes no other stage's seed or result."""

from dataclasses import replace

import torch
from conftest import TINY, assert_same_state, synthetic_dataset

from lawr_ext.algorithms import registry
from lawr_ext.configs.train import load_train_config
from lawr_ext.runners import checkpoint_path, final_path, read_checkpoint, train
from lawr_ext.runners.trainer import stage_seed

STAGES = registry.PHASE_NAMES + ("fql", "gaussian_awr")


def test_inserting_a_stage_leaves_every_other_stage_unchanged(tmp_path, monkeypatch):
    dataset = synthetic_dataset(tmp_path / "data.npz")
    cfg = load_train_config("Bimanual-Chunk", TINY)
    before, after = tmp_path / "before", tmp_path / "after"
    train(cfg, dataset, before, STAGES)

    # A trained stage inserted between the critic and the planner: Gaussian AWR again, under another name.
    probe = replace(registry.STAGES["gaussian_awr"], name="probe", method="probe")
    inserted = {}
    for name, stage in registry.STAGES.items():
        inserted[name] = stage
        if name == "critic":
            inserted["probe"] = probe
    monkeypatch.setattr(registry, "STAGES", inserted)
    monkeypatch.setattr(registry, "BASELINES", registry.BASELINES | {"probe": probe})
    summary = train(cfg, dataset, after, STAGES + ("probe",))
    assert list(summary["baselines"]) == ["probe", "gaussian_awr", "fql"]  # it really ran before the others

    for name in STAGES:  # the same seed, the same batches, the same weights
        for path, key in ((checkpoint_path, "learner"), (final_path, "model")):
            want, got = (read_checkpoint(path(run, name))[key] for run in (before, after))
            assert_same_state(got, want, f"{name} {key}")
    # The inserted stage has a seed of its own (its name's): same settings as gaussian_awr, other weights.
    assert stage_seed(cfg, "probe") != stage_seed(cfg, "gaussian_awr")
    probe_model, awr_model = (read_checkpoint(final_path(after, n))["model"] for n in ("probe", "gaussian_awr"))
    assert not all(torch.equal(probe_model[k], awr_model[k]) for k in awr_model)
