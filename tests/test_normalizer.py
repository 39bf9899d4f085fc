"""The normalizers: one fit on the whole dataset, owned by Phase 1's behaviour model, with the data config's
action normalization and no other."""

import pytest
import torch
from conftest import TINY, synthetic_dataset

from lawr_ext.algorithms.flow import MeanFlow
from lawr_ext.algorithms.lawr import mean_flow
from lawr_ext.algorithms.stage import StageInputs
from lawr_ext.configs.data import DataConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.train import load_train_config
from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset, load_episodes
from lawr_ext.modules.normalizer import ACTION_NORMALIZATIONS, fit_normalizers

TINY_FLOW = FlowConfig(arch="mlp", width=16, depth=1, time_embed_dim=8)


def test_fitted_observation_normalizer_standardizes_the_dataset_and_stays_frozen():
    scale, shift = torch.tensor([5.0, 0.1, 1.0]), torch.tensor([3.0, -2.0, 0.0])
    obs = torch.randn(4000, 3) * scale + shift
    normalizer = fit_normalizers(obs, torch.randn(4000, 2), "min_max").obs

    normalized = normalizer(obs)
    assert normalized.mean(0).abs().max() < 1e-4
    # rsl_rl divides by (std + 1e-2): a 0.1-std feature comes out at std 0.1 / 0.11 ~ 0.91.
    torch.testing.assert_close(normalized.std(0), obs.std(0) / (obs.std(0) + normalizer.eps), rtol=1e-3, atol=0)
    assert normalized.std(0)[[0, 2]].sub(1).abs().max() < 0.02
    assert not normalizer.training

    before = (normalizer.mean, normalizer.std)
    other = torch.randn(500, 3) * 10 + 7
    normalizer.update(other)  # eval mode: ignored
    normalizer.train()        # even a parent's .train() must not unfreeze it (``until`` is reached)
    normalizer.update(other)
    assert torch.equal(normalizer.mean, before[0]) and torch.equal(normalizer.std, before[1])


def test_min_max_maps_the_data_box_onto_the_unit_box_and_round_trips():
    actions = torch.stack([0.04 * torch.randn(300), 0.9 * torch.rand(300) - 0.2, torch.full((300,), 0.3)], dim=1)
    normalizer = fit_normalizers(torch.randn(300, 2), actions, "min_max").actions
    normalized = normalizer.normalize(actions)
    torch.testing.assert_close(normalized[:, :2].min(0).values, torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(normalized[:, :2].max(0).values, torch.tensor([1.0, 1.0]))
    assert normalizer.half_range[2] == pytest.approx(1e-2)  # a dimension the data never moves is not blown up
    assert torch.equal(normalized[:, 2], torch.zeros(300))
    torch.testing.assert_close(normalizer.unnormalize(normalized), actions)

    identity = fit_normalizers(torch.randn(300, 2), actions, "none").actions
    assert torch.equal(identity.normalize(actions), actions) and torch.equal(identity.unnormalize(actions), actions)


def test_mean_std_gives_every_action_dimension_unit_variance_and_round_trips():
    """The flow's prior has unit variance per number; mean_std puts each action dimension at that scale, where
    min_max leaves a dimension whose data has rare extremes (a clipped command) at a fraction of it."""
    actions = torch.stack([0.1 * torch.randn(400), 0.8 * torch.randn(400) + 0.3, torch.full((400,), -0.5)], dim=1)
    actions[0, 0] = 1.0  # one extreme: min_max would map the bulk of this dimension into about a third of [-1, 1]
    normalizer = fit_normalizers(torch.randn(400, 2), actions, "mean_std").actions
    normalized = normalizer.normalize(actions)
    torch.testing.assert_close(normalized[:, :2].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalized[:, :2].std(0), torch.ones(2), atol=1e-5, rtol=0)
    assert normalizer.half_range[2] == pytest.approx(1e-2) and torch.equal(normalized[:, 2], torch.zeros(400))
    torch.testing.assert_close(normalizer.unnormalize(normalized), actions)
    min_max = fit_normalizers(torch.randn(400, 2), actions, "min_max").actions.normalize(actions)
    assert min_max[1:, 0].std() < 0.5 * normalized[1:, 0].std()


@pytest.mark.parametrize("obs, actions, mode, problem", [
    (torch.randn(10), torch.randn(10, 2), "min_max", "observations of shape"),
    (torch.randn(1, 3), torch.randn(1, 2), "min_max", "observations of shape"),
    (torch.tensor([[0.0, float("nan")]] * 4), torch.randn(4, 2), "min_max", "observations contain NaN"),
    (torch.randn(4, 3), torch.randn(5, 2), "min_max", "actions of shape"),
    (torch.randn(4, 3), torch.tensor([[float("inf")]] * 4), "none", "actions contain NaN"),
    (torch.randn(4, 3), torch.randn(4, 2), "z_score", "action normalization must be one of"),
])
def test_bad_input_is_refused_in_one_line(obs, actions, mode, problem):
    with pytest.raises(ValueError, match=f"fit_normalizers: .*{problem}") as error:
        fit_normalizers(obs, actions, mode)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("mode", ACTION_NORMALIZATIONS)
def test_phase_one_fits_both_normalizers_on_the_whole_dataset_with_the_configs_mode(tmp_path, mode):
    """The dataset holds env actions and no normalizer; Phase 1 fits the normalizers on all of it, with the mode
    its StageInputs carries (data.action_normalization), and batches reach the learners in those coordinates."""
    dataset = ChunkDataset(load_episodes(synthetic_dataset(tmp_path / "data.npz")), 4, 0.9)
    assert not hasattr(dataset, "action_normalizer")
    recorded = dataset.batch(torch.arange(dataset.num_chunks))
    assert torch.equal(recorded[keys.OBS], dataset.episodes.obs[dataset.chunk_first_row])
    assert torch.equal(recorded[keys.ACTIONS][:, 0], dataset.episodes.actions[dataset.chunk_first_row])

    inputs = StageInputs(dataset.obs_dim, 4, dataset.action_dim, dataset=dataset, action_normalization=mode)
    learner: MeanFlow = mean_flow(TINY_FLOW, inputs)
    actions = dataset.episodes.actions
    if mode == "min_max":
        middle = (actions.max(0).values + actions.min(0).values) / 2
        torch.testing.assert_close(learner.action_normalizer.center, middle)
    elif mode == "mean_std":
        torch.testing.assert_close(learner.action_normalizer.center, actions.mean(0))
    else:
        assert torch.equal(learner.action_normalizer.center, torch.zeros(dataset.action_dim))
    torch.testing.assert_close(learner.obs_normalizer.mean, dataset.episodes.obs.mean(0))
    seen = learner.learner_batch(recorded)[keys.ACTIONS]
    torch.testing.assert_close(seen, learner.action_normalizer.normalize(recorded[keys.ACTIONS]))
    if mode == "min_max":
        assert seen.min() == pytest.approx(-1.0) and seen.max() == pytest.approx(1.0)

    product = learner.product()  # the behaviour model owns both, as fitted
    assert torch.equal(product.action_normalizer.half_range, learner.action_normalizer.half_range)
    assert product.obs_normalizer is learner.obs_normalizer


def test_phase_one_without_the_data_configs_mode_is_refused(tmp_path):
    dataset = ChunkDataset(load_episodes(synthetic_dataset(tmp_path / "data.npz")), 4, 0.9)
    with pytest.raises(ValueError, match="data.action_normalization"):
        mean_flow(TINY_FLOW, StageInputs(dataset.obs_dim, 4, dataset.action_dim, dataset=dataset))


def test_a_run_fits_with_the_data_configs_default(finished_run):
    """The one default lives in DataConfig: a run that does not set it trains in its coordinates."""
    from lawr_ext.runners.pipeline import load_product, open_dataset
    from lawr_ext.runners.trainer import dataset_dims

    data_path, run_dir = finished_run
    cfg = load_train_config("Bimanual-Chunk", TINY)
    assert cfg.data.action_normalization == DataConfig().action_normalization == "min_max"
    dataset = open_dataset(cfg, data_path)
    behavior = load_product(run_dir, "flow", cfg, dataset_dims(dataset))
    expected = fit_normalizers(dataset.observations, dataset.actions, DataConfig().action_normalization)
    for name in ("center", "half_range"):
        assert torch.equal(getattr(behavior.action_normalizer, name), getattr(expected.actions, name)), name
    assert torch.equal(behavior.obs_normalizer.mean, expected.obs.mean)
