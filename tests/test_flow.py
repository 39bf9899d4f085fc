"""Phase 1: the Mean Flow behavior model recovers a bimodal conditional distribution in ONE step, its JVP
target is exact, and the frozen copy cannot be changed by anything trained downstream of it."""

import copy

import pytest
import torch
from tensordict import TensorDict
from conftest import fitted_obs_normalizer

from lawr_ext.algorithms.base import freeze
from lawr_ext.algorithms.flow import FlowBCPolicy, MeanFlow, build_flow_decoder, interpolate
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.data import keys
from lawr_ext.eval.diagnostics import sample_quality
from lawr_ext.utils.io import parameter_fingerprint

H, A, O = 4, 2, 2
PROB_PLUS = (0.3, 0.7)   # P(chunk = +m(s)) for s_0 = -1 and s_0 = +1
TOY_STEPS, TOY_BATCH = 500, 512
TINY = dict(width=32, depth=2, num_heads=2, mlp_ratio=2, time_embed_dim=32)
PATTERN = torch.linspace(-1, 1, H * A).view(H, A) + 0.5


def bimodal_toy(n, generator=None):
    """obs s = (s_0 in {-1, +1}, s_1 ~ U(-1, 1)); chunk = +-m(s) + small noise, '+' with probability p(s_0)."""
    s = torch.rand(n, O, generator=generator) * 2 - 1
    s[:, 0] = torch.where(s[:, 0] < 0, -1.0, 1.0)
    p_plus = torch.where(s[:, 0] < 0, PROB_PLUS[0], PROB_PLUS[1])
    sign = torch.where(torch.rand(n, generator=generator) < p_plus, 1.0, -1.0)
    mode = (0.5 + 0.2 * s[:, 1])[:, None, None] * PATTERN
    chunks = sign[:, None, None] * mode + 0.03 * torch.randn(n, H, A, generator=generator)
    return s, chunks, mode


def chunk_batch(obs, actions, mask=None):
    mask = torch.ones(actions.shape[:2], dtype=torch.bool) if mask is None else mask
    return TensorDict({keys.OBS: obs, keys.ACTIONS: actions, keys.MASK: mask}, batch_size=[obs.shape[0]])


@pytest.fixture(scope="module")
def toy_flow():
    """The JiT-like transformer (the default arch), tiny, trained once on the toy (about a minute on one core)."""
    torch.manual_seed(0)
    obs, chunks, _ = bimodal_toy(20_000)
    normalizer = fitted_obs_normalizer(obs)
    learner = MeanFlow(FlowConfig(**TINY, learning_rate=2e-3, ema_decay=0.99), O, H, A, normalizer)
    untrained = learner.frozen_decoder()
    for _ in range(TOY_STEPS):
        idx = torch.randint(0, obs.shape[0], (TOY_BATCH,))
        info = learner.update(chunk_batch(obs[idx], chunks[idx]))
    assert all(torch.isfinite(torch.tensor(v)) for v in info.values())
    return learner, normalizer, untrained


def test_one_step_samples_cover_both_modes_in_proportion(toy_flow):
    learner, normalizer, _ = toy_flow
    policy = FlowBCPolicy(learner.frozen_decoder(), normalizer, num_steps=1)
    obs, _, mode = bimodal_toy(4000, torch.Generator().manual_seed(1))
    with torch.no_grad():
        chunks = policy(obs)
    # Coordinate of each sample along its own mode: +1 / -1 on the modes, 0 halfway between them.
    coef = (chunks * mode).sum((1, 2)) / mode.square().sum((1, 2))
    for context, p_plus in zip((-1.0, 1.0), PROB_PLUS):
        in_context = obs[:, 0] == context
        frac_plus = (coef[in_context] > 0.5).float().mean().item()
        assert abs(frac_plus - p_plus) < 0.1, f"s_0={context}: {frac_plus:.2f} of samples on '+', want {p_plus}"
    between = (coef.abs() < 0.5).float().mean().item()
    assert between < 0.1, f"{between:.1%} of one-step samples fall between the modes"
    assert (coef.abs() - 1).abs().median() < 0.15  # and those on a mode sit on it, not merely on its side


def test_trained_samples_are_closer_to_held_out_data(toy_flow):
    learner, normalizer, untrained = toy_flow
    obs, chunks, _ = bimodal_toy(2000, torch.Generator().manual_seed(2))
    trained_quality = sample_quality(learner.frozen_decoder(), normalizer(obs), chunks)
    untrained_quality = sample_quality(untrained, normalizer(obs), chunks)
    print("sample quality (sliced W2): trained", trained_quality, "untrained", untrained_quality)
    for k_steps, distance in trained_quality.items():
        assert distance < 0.5 * untrained_quality[k_steps], k_steps


@pytest.mark.parametrize("arch, conditioning", [("transformer", "concat"), ("mlp", "concat"), ("mlp", "film")])
def test_jvp_target_matches_finite_differences(arch, conditioning):
    torch.set_default_dtype(torch.float64)  # central differences need the precision
    try:
        learner = MeanFlow(FlowConfig(arch=arch, conditioning=conditioning, **TINY), O, H, A,
                           fitted_obs_normalizer(torch.randn(16, O)))
        decoder = learner.decoder
        with torch.no_grad():  # random weights everywhere: the zero-initialized output layers would hide terms
            for p in decoder.parameters():
                p.normal_(0, 0.3)
        B = 6
        x, noise, obs_norm = torch.randn(B, H, A), torch.randn(B, H, A), torch.randn(B, O)
        t = 0.15 + 0.8 * torch.rand(B)
        r = torch.where(torch.arange(B) < 2, t, t * torch.rand(B))  # two rows with r = t skip the JVP
        z_t, v = interpolate(x, noise, t), noise - x

        target = MeanFlow.mean_flow_target(decoder, z_t, t, r, obs_norm, v)
        h = 1e-6
        with torch.no_grad():  # d/dt u(z_t, t, r) along the path: tangent (v, 1, 0)
            du_dt = (decoder.average_velocity(z_t + h * v, t + h, r, obs_norm)
                     - decoder.average_velocity(z_t - h * v, t - h, r, obs_norm)) / (2 * h)
        expected = v - (t - r)[:, None, None] * du_dt
        assert du_dt.abs().max() > 1.0  # the term is not trivially zero
        torch.testing.assert_close(target, expected, rtol=1e-6, atol=1e-6)
    finally:
        torch.set_default_dtype(torch.float32)


def test_frozen_decoder_is_unchanged_by_training_through_it():
    obs, chunks, _ = bimodal_toy(256)
    normalizer = fitted_obs_normalizer(obs)
    learner = MeanFlow(FlowConfig(**TINY), O, H, A, normalizer)
    for _ in range(3):
        learner.update(chunk_batch(obs[:64], chunks[:64]))
    frozen = learner.frozen_decoder()
    assert not frozen.training and not any(m.training for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters())
    fingerprint = parameter_fingerprint(frozen)

    # A downstream learner (a planner obs -> z) trained through the one-step map T(z; s).
    planner = torch.nn.Linear(O, H * A)
    optimizer = torch.optim.Adam(planner.parameters(), lr=1e-2)
    before = copy.deepcopy(planner.state_dict())
    for _ in range(3):
        z = planner(normalizer(obs)).view(-1, H, A)
        z.retain_grad()
        loss = (frozen.decode(z, normalizer(obs)) - chunks).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert z.grad is not None and z.grad.abs().sum() > 0  # the gradient reaches z ...
    assert all(p.grad is None for p in frozen.parameters())  # ... and never theta
    assert not torch.equal(before["weight"], planner.weight)
    learner.update(chunk_batch(obs[:64], chunks[:64]))  # the trainer moving on does not touch the copy either
    assert parameter_fingerprint(frozen) == fingerprint

    reloaded = freeze(build_flow_decoder(learner.cfg, O, H, A))  # as the runner restores a product for Phases 2/3
    reloaded.load_state_dict(frozen.state_dict())
    assert parameter_fingerprint(reloaded) == fingerprint and not any(p.requires_grad for p in reloaded.parameters())


def test_one_step_sampling_is_the_one_step_map_and_multi_step_runs():
    learner = MeanFlow(FlowConfig(**TINY), O, H, A, fitted_obs_normalizer(torch.randn(16, O)))
    with torch.no_grad():
        for p in learner.decoder.parameters():
            p.normal_(0, 0.1)
    decoder, obs_norm = learner.decoder, torch.randn(5, O)
    sampled = decoder.sample(obs_norm, 1, generator=torch.Generator().manual_seed(3))
    z = torch.randn(5, H, A, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(sampled, decoder.decode(z, obs_norm))
    four_step = decoder.sample(obs_norm, 4, generator=torch.Generator().manual_seed(3))
    assert four_step.shape == (5, H, A) and not torch.allclose(four_step, sampled)
    # the multi-step map a planner steers through is the sampler's, and differentiable in z
    z.requires_grad_(True)
    decoded = decoder.decode(z, obs_norm, 4)
    assert torch.allclose(decoded.detach(), four_step)
    decoded.square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        decoder.decode(z, obs_norm, 0)


def test_padded_steps_do_not_enter_the_loss():
    obs, chunks, _ = bimodal_toy(32)
    learner = MeanFlow(FlowConfig(**TINY), O, H, A, fitted_obs_normalizer(obs))
    mask = torch.ones(32, H, dtype=torch.bool)
    mask[:16] = False  # the first 16 chunks are all padding
    losses = []
    for padding_value in (0.0, 100.0):
        padded = chunks.clone()
        padded[:16] = padding_value
        torch.manual_seed(5)  # same noise and times in both passes
        losses.append(learner.loss(chunk_batch(obs, padded, mask))[0])
    assert losses[0] > 0 and torch.equal(losses[0], losses[1])
    torch.manual_seed(5)
    assert learner.loss(chunk_batch(obs, chunks, torch.zeros(32, H, dtype=torch.bool)))[0] == 0


def test_film_conditioning_starts_as_the_concat_network_and_learns_its_modulation():
    obs, chunks, _ = bimodal_toy(256, torch.Generator().manual_seed(4))
    normalizer = fitted_obs_normalizer(obs)
    torch.manual_seed(0)
    concat = MeanFlow(FlowConfig(arch="mlp", **TINY), O, H, A, normalizer)
    film = MeanFlow(FlowConfig(arch="mlp", conditioning="film", **TINY), O, H, A, normalizer)
    missing, unexpected = film.decoder.load_state_dict(concat.decoder.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("net.film.") for key in missing)
    z, t, r = torch.randn(32, H, A), torch.rand(32), torch.zeros(32)
    with torch.no_grad():  # the zero-initialized modulation: the same function as the concat network
        torch.testing.assert_close(film.decoder(z, t, r, normalizer(obs[:32])),
                                   concat.decoder(z, t, r, normalizer(obs[:32])))
    for _ in range(3):
        film.update(chunk_batch(obs, chunks))
    assert all(layer[-1].weight.abs().sum() > 0 for layer in film.decoder.net.film)
    with pytest.raises(ValueError, match="FlowConfig.conditioning"):
        FlowConfig(conditioning="cross_attention")


def test_bf16_compute_keeps_fp32_weights_and_a_loss_close_to_fp32():
    obs, chunks, _ = bimodal_toy(256, torch.Generator().manual_seed(3))
    normalizer = fitted_obs_normalizer(obs)
    torch.manual_seed(0)
    fp32 = MeanFlow(FlowConfig(arch="mlp", **TINY), O, H, A, normalizer)
    bf16 = MeanFlow(FlowConfig(arch="mlp", **TINY, compute_dtype="bfloat16"), O, H, A, normalizer)
    bf16.decoder.load_state_dict(fp32.decoder.state_dict())
    losses = []
    for learner in (fp32, bf16):
        torch.manual_seed(5)  # the same noise and times
        losses.append(learner.loss(chunk_batch(obs, chunks))[0])
    assert losses[1].dtype == torch.float32
    assert not torch.equal(losses[0], losses[1])  # bf16 products really ran
    torch.testing.assert_close(losses[1], losses[0], rtol=0.05, atol=0.0)
    before = [p.clone() for p in bf16.decoder.parameters()]
    bf16.update(chunk_batch(obs, chunks))
    assert all(p.dtype == torch.float32 for p in bf16.decoder.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, bf16.decoder.parameters()))


@pytest.mark.parametrize("native", [False, True])
def test_auto_compute_dtype_runs_bf16_only_where_the_device_has_it(monkeypatch, request, native):
    """compute_dtype="auto": fp32 on a CPU without native bf16 (emulated bf16 is many times slower there), bf16 on
    one with it; the loss equals the one of the dtype it resolves to."""
    from lawr_ext.algorithms import training

    training.resolve_compute_dtype.cache_clear()  # its cached answers are this machine's, not the patched one's
    request.addfinalizer(training.resolve_compute_dtype.cache_clear)  # nor may the patched one's outlive the test
    monkeypatch.setattr(training, "native_bf16", lambda device: native)
    obs, chunks, _ = bimodal_toy(64, torch.Generator().manual_seed(3))
    normalizer = fitted_obs_normalizer(obs)
    torch.manual_seed(0)
    learners = [MeanFlow(FlowConfig(arch="mlp", **TINY, compute_dtype=dtype), O, H, A, normalizer)
                for dtype in ("auto", "float32", "bfloat16")]
    for learner in learners[1:]:
        learner.decoder.load_state_dict(learners[0].decoder.state_dict())
    losses = []
    for learner in learners:
        torch.manual_seed(5)
        losses.append(learner.loss(chunk_batch(obs, chunks))[0])
    assert training.resolve_compute_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    assert torch.equal(losses[0], losses[2] if native else losses[1])
    assert not torch.equal(losses[0], losses[1] if native else losses[2])


def test_bad_config_and_batch_raise_clear_errors():
    with pytest.raises(ValueError, match="FlowConfig.arch"):
        FlowConfig(arch="unet")
    with pytest.raises(ValueError, match="FlowConfig.compute_dtype"):
        FlowConfig(compute_dtype="float16")
    with pytest.raises(ValueError, match="FlowConfig.num_heads"):
        FlowConfig(width=30, num_heads=4)
    learner = MeanFlow(FlowConfig(**TINY), O, H, A, fitted_obs_normalizer(torch.randn(16, O)))
    with pytest.raises(ValueError, match="MeanFlow: batch"):
        learner.update(chunk_batch(torch.randn(8, O), torch.randn(8, H + 1, A)))
