"""The action box the learners clamp to, in their own coordinates: the env's box [-1, 1] seen through the action
normalizer (and the chunk basis), so that under mean_std no dataset chunk is cut, while min_max and none clamp
exactly as they did."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from conftest import fitted_obs_normalizer

from lawr_ext.algorithms.base import Learner
from lawr_ext.algorithms.baselines.diffusion import DiffusionDenoiser
from lawr_ext.algorithms.baselines.gaussian_awr import GaussianChunkActor
from lawr_ext.algorithms.baselines.q_learning import q_maximization_loss
from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.algorithms.flow import BehaviorModel, MeanFlow
from lawr_ext.algorithms.registry import BASELINES, matched_config
from lawr_ext.algorithms.stage import StageInputs
from lawr_ext.configs.baselines import DiffusionConfig, GaussianAWRConfig
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.modules.action_box import ActionBox
from lawr_ext.modules.chunk_basis import ChunkBasis
from lawr_ext.modules.normalizer import ACTION_NORMALIZATIONS, fit_normalizers

OBS_DIM, H, A, K = 3, 8, 4, 3
TINY_FLOW = FlowConfig(arch="mlp", width=16, depth=1, time_embed_dim=8)
TINY_CRITIC = CriticConfig(v_min=-1.0, v_max=1.5, num_bins=11, hidden_dim=16, num_layers=1)
#: the baselines that clamp or squash chunks in the learners' coordinates: in training, and in acting too
BOXED = ("gaussian_awr", "fql", "ofql", "best_of_n", "diffusion", "qc", "lps", "dsrl_na")
BOXED_POLICIES = ("gaussian_awr", "fql", "best_of_n", "diffusion", "qc")


def env_chunks(n: int, seed: int = 0) -> torch.Tensor:
    """Env actions [n, H, A] shaped like the Bimanual data: arm joints that move little around an offset (std
    0.03-0.1), and a gripper that is fully open or closed (at the env's limits, +-1)."""
    g = torch.Generator().manual_seed(seed)
    arms = torch.tensor([0.3, -0.2, 0.05]) + torch.tensor([0.05, 0.1, 0.03]) * torch.randn(n, H, A - 1, generator=g)
    gripper = torch.where(torch.rand(n, 1, 1, generator=g) < 0.5, -1.0, 1.0).expand(n, H, 1)
    return torch.cat([arms, gripper], dim=-1).clamp(-1.0, 1.0)


def fitted_action_normalizer(mode: str, seed: int = 0):
    chunks = env_chunks(256, seed)
    return fit_normalizers(torch.randn(chunks.shape[0] * H, OBS_DIM), chunks.flatten(0, 1), mode).actions


class RecordingQ(nn.Module):
    """A critic that records the chunks it is asked to score."""

    def q_value(self, obs_norm: torch.Tensor, chunks: torch.Tensor, aggregate: str | None = None) -> torch.Tensor:
        self.seen = chunks
        return chunks.sum(dim=(1, 2))


class Constant(nn.Module):
    """A denoiser network whose every clean-chunk estimate is ``chunks``."""

    def __init__(self, chunks: torch.Tensor):
        super().__init__()
        self.chunks = chunks

    def forward(self, x_k, t, r, obs_norm):
        return self.chunks


@pytest.mark.parametrize("mode", ACTION_NORMALIZATIONS)
def test_the_box_is_the_env_box_seen_through_the_normalizer(mode):
    normalizer = fitted_action_normalizer(mode)
    low, high = normalizer.learner_box()
    ones = torch.ones(A)
    assert torch.equal(low, normalizer.normalize(-ones)) and torch.equal(high, normalizer.normalize(ones))
    torch.testing.assert_close(normalizer.unnormalize(low), -ones)
    torch.testing.assert_close(normalizer.unnormalize(high), ones)
    box = ActionBox.of(normalizer, action_normalization=mode)
    if mode == "mean_std":
        assert not box.unit and torch.equal(box.low, low) and torch.equal(box.high, high)
        assert (high - low)[:-1].min() > 5  # the arms move by a few hundredths: the env's box is many std wide
    else:  # the data's box [-1, 1] under min_max (inside the env's image), [-1, 1] itself under none
        assert box.unit and bool((low <= -1).all()) and bool((high >= 1).all())


def test_under_mean_std_no_dataset_chunk_is_altered_by_a_learners_clamp():
    normalizer = fitted_action_normalizer("mean_std")
    data = normalizer.normalize(env_chunks(512, seed=1))  # chunks as the learners see them
    box = ActionBox.of(normalizer, action_normalization="mean_std")
    assert torch.equal(box.clamp(data), data)
    assert (data.clamp(-1.0, 1.0) != data).float().mean() > 0.2  # what [-1, 1] (= +-1 std) would have cut

    # the Q input of the Q-maximizing actors: FQL, OFQL, LPS
    critic = RecordingQ()
    q_maximization_loss(critic, torch.zeros(data.shape[0], OBS_DIM), data, normalize=False, box=box)
    assert torch.equal(critic.seen, data)

    # Diffusion's clip_sample: a denoiser whose every clean-chunk estimate is a dataset chunk lands on it
    denoiser = DiffusionDenoiser(DiffusionConfig(prediction="sample", sample_steps=5), OBS_DIM, H, A, box)
    denoiser.net = Constant(data[:8])
    sample = denoiser.sample(torch.zeros(8, OBS_DIM), torch.randn(8, H, A), num_steps=5)
    torch.testing.assert_close(sample, data[:8])
    assert (sample.amax(dim=(0, 1)) > 1.5).any()  # past [-1, 1]: the old clip would have cut it

    # Gaussian AWR's squashed mean spans every dataset chunk (the grippers at the env's limits on its edge)
    lower, upper = box.squash_center - box.squash_half, box.squash_center + box.squash_half
    assert bool((lower <= data).all() and (data <= upper).all())


@pytest.mark.parametrize("mode", ["min_max", "none"])
def test_under_min_max_and_none_the_clamps_are_the_ones_before(mode):
    """The box is [-1, 1] there, and every clamp and squash is the same computation as before it followed the
    normalizer, bit for bit, gradients included: recorded results stay reproducible."""
    normalizer = fitted_action_normalizer(mode)
    box = ActionBox.of(normalizer, action_normalization=mode)
    assert box.unit
    raw = (3 * torch.randn(64, H, A)).requires_grad_()
    clamped = box.clamp(raw)
    assert torch.equal(clamped, raw.clamp(-1.0, 1.0))
    grad_new, = torch.autograd.grad(clamped.square().sum(), raw)
    grad_old, = torch.autograd.grad(raw.clamp(-1.0, 1.0).square().sum(), raw)
    assert torch.equal(grad_new, grad_old)
    assert torch.equal(box.squash(raw), torch.tanh(raw))

    torch.manual_seed(0)
    actor = GaussianChunkActor(GaussianAWRConfig(hidden_dim=16, num_layers=1), OBS_DIM, H, A, box)
    obs = torch.randn(5, OBS_DIM)
    mean, _ = actor.mean_and_log_std(obs)
    assert torch.equal(mean, torch.tanh(actor.net(obs)))

    critic = RecordingQ()
    q_maximization_loss(critic, obs, raw, normalize=False, box=box)
    assert torch.equal(critic.seen, raw.clamp(-1.0, 1.0))


def test_dct_clamps_the_steps_not_the_coefficients():
    basis = ChunkBasis(H, "dct", K)
    box = ActionBox(chunk_basis=basis)  # min_max's box [-1, 1] on every step
    steps = torch.linspace(0, math.pi, H)
    smooth = torch.stack([0.8 + 0.1 * torch.cos(steps), -0.7 * torch.ones(H), 0.5 * torch.sin(steps),
                          torch.zeros(H)], dim=-1)[None]  # [1, H, A], inside the box
    coeffs = basis.encode(smooth)
    assert bool((basis.decode(coeffs).abs() < 1).all())
    # a chunk whose steps lie in the box comes back bit for bit, though its first coefficient is far past 1
    # (sqrt(H) times its mean): a clamp of the coefficients to [-1, 1] would have moved its mean to 1 / sqrt(H)
    assert coeffs.abs().max() > 2
    assert torch.equal(box.clamp(coeffs), coeffs)
    # one whose steps leave the box becomes the coefficients of the clamped steps
    outside = 1.5 * coeffs + 0.3 * torch.randn(4, K, A)
    torch.testing.assert_close(box.clamp(outside), basis.encode(basis.decode(outside).clamp(-1, 1)),
                               rtol=0, atol=1e-5)

    # squash: the smallest coefficient box holding every chunk whose steps lie in the step box
    normalizer = fitted_action_normalizer("mean_std")
    box = ActionBox.of(normalizer, basis, "mean_std")
    low, high = normalizer.learner_box()
    lower, upper = box.squash_center - box.squash_half, box.squash_center + box.squash_half
    inside = low + (high - low) * torch.rand(512, H, A)
    assert bool((basis.encode(inside) >= lower - 1e-5).all() and (basis.encode(inside) <= upper + 1e-5).all())
    for k in range(K):  # coefficient k's bounds are reached, by the chunks at the box's corners along its cosine
        sign = torch.sign(basis.basis[k])[None, :, None]
        top = basis.encode(torch.where(sign > 0, high, low).expand(1, H, A))
        torch.testing.assert_close(top[0, k], upper[k], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(box.squash(torch.full((1, K, A), 50.0))[0], upper)
    torch.testing.assert_close(box.squash(torch.full((1, K, A), -50.0))[0], lower)


@pytest.mark.parametrize("chunk_basis", ["steps", "dct"])
def test_every_baseline_takes_its_box_from_phase_one_and_the_data_config(chunk_basis):
    """Built from a run's StageInputs (mean_std), each baseline that clamps or squashes holds the normalizer's
    box in its basis, as learner and as saved product, and the box adds nothing to a checkpoint."""
    torch.manual_seed(0)
    basis = ChunkBasis(H, chunk_basis, K)
    horizon = basis.num_coeffs
    obs_normalizer = fitted_obs_normalizer(torch.randn(200, OBS_DIM))
    action_normalizer = fitted_action_normalizer("mean_std")
    decoder = MeanFlow(TINY_FLOW, OBS_DIM, horizon, A, obs_normalizer).frozen_decoder()
    products = {"flow": BehaviorModel(decoder, obs_normalizer, action_normalizer, basis),
                "critic": DistributionalCritic(TINY_CRITIC, OBS_DIM, horizon, A, obs_normalizer)}
    inputs = StageInputs(OBS_DIM, horizon, A, products, chunk_basis=basis, action_normalization="mean_std")
    low, high = action_normalizer.learner_box()
    for name in BOXED:
        settings = matched_config(name, TINY_FLOW, TINY_CRITIC)
        built = BASELINES[name].build(settings, inputs)
        modules = [built]
        if name in BOXED_POLICIES:  # the others act through the flow alone (the env's clamp follows every policy)
            modules.append(BASELINES[name].product(settings, inputs))
            if isinstance(built, Learner):
                modules.append(built.policy())
        for module in modules:
            boxes = [m for m in module.modules() if isinstance(m, ActionBox)]
            assert boxes, (name, type(module).__name__)
            for box in boxes:
                assert box.kind == chunk_basis and not box.unit, name
                assert torch.equal(box.low, low) and torch.equal(box.high, high), name
            assert not any("action_box" in key for key in module.state_dict()), name
