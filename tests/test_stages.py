"""The stage registry: a stage inserted anywhere changes no other stage's seed or result."""

from dataclasses import replace

import torch
from conftest import TINY, assert_same_state, synthetic_dataset

from lawr_ext.algorithms import registry
from lawr_ext.algorithms.base import Learner
from lawr_ext.configs.train import load_train_config
from lawr_ext.runners import checkpoint_path, final_path, read_checkpoint, train
from lawr_ext.runners.checkpoint import load_final, save_final
from lawr_ext.runners.pipeline import run_config, run_inputs
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


def test_every_stage_saves_only_its_own_networks_and_is_assembled_back_from_what_it_needs(finished_run, tmp_path):
    """A final.pt holds none of the tensors of the frozen products a stage is built from (the flow's decoder and
    normalizers, the critic), and the product rebuilt from those products and that file is the one it saved."""
    run = finished_run[1]
    cfg, dims = run_config(run), read_checkpoint(final_path(run, "flow"))["dims"]
    inputs = run_inputs(run, cfg, dims)
    products = {name: inputs[name] for name in ("flow", "critic")}
    theirs = {id(t) for product in products.values() for t in product.state_dict(keep_vars=True).values()}
    for name, stage in registry.STAGES.items():
        if not stage.needs:
            continue
        settings = registry.stage_config(cfg, name)
        built = stage.build(settings, inputs)
        product = built.product() if isinstance(built, Learner) else built
        save_final(tmp_path, cfg, name, dims, product, products, {n: inputs.hashes[n] for n in stage.needs})
        saved = read_checkpoint(final_path(tmp_path, name), name)["model"]
        tensors = product.state_dict(keep_vars=True)
        assert not any(id(tensors[key]) in theirs for key in saved), name
        assert all(id(t) in theirs for key, t in tensors.items() if key not in saved), name  # only theirs left out
        rebuilt = stage.product(settings, inputs)  # fresh weights where its own are
        load_final(tmp_path, name, rebuilt, cfg, dims, products)
        assert_same_state(rebuilt.state_dict(), product.state_dict(), name)
