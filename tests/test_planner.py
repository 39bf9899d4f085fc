"""Phase 3: the latent planner, trained through a real frozen Mean Flow, picks the better of two action modes;
and so do its peers that steer the same frozen flow and critic with another objective (LPS, DSRL-NA).

Toy (a one-step bandit): obs s = (s_0, s_1) ~ U(-1, 1)^2; the behaviour data hold two chunk modes +-m(s),
m(s) = (0.5 + 0.2 s_1) * PATTERN, each with probability 1/2 (+ small noise). The reward is 1 when the
chunk's sign equals sign(s_0), else 0, so the better mode flips with s_0. Pipeline as in training: fit the
normaliser, train a small MeanFlow and freeze it, train the HL-Gauss critic, then the planner.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from tensordict import TensorDict
from conftest import fitted_obs_normalizer

from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.algorithms.flow import BehaviorModel, MeanFlow
from lawr_ext.algorithms.awr import awr_weights
from lawr_ext.algorithms.planner import LatentAWR
from lawr_ext.algorithms.registry import BASELINES, matched_config
from lawr_ext.algorithms.stage import StageInputs
from lawr_ext.algorithms.training import adam_steps
from lawr_ext.configs.awr import AWRWeightConfig
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.planner import PlannerConfig
from lawr_ext.data import keys
from lawr_ext.modules.normalizer import ActionNormalizer
from lawr_ext.eval.diagnostics import support_metrics
from lawr_ext.utils.io import parameter_fingerprint

H, A, O = 2, 2, 2
PATTERN = torch.tensor([[1.0, -0.5], [0.5, 1.0]])
BATCH = 128


def mode_of(obs: torch.Tensor) -> torch.Tensor:
    return (0.5 + 0.2 * obs[:, 1])[:, None, None] * PATTERN


def bandit_data(n: int, generator: torch.Generator) -> TensorDict:
    obs = torch.rand(n, O, generator=generator) * 2 - 1
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, 1.0, -1.0)
    actions = sign[:, None, None] * mode_of(obs) + 0.03 * torch.randn(n, H, A, generator=generator)
    return TensorDict({
        keys.OBS: obs, keys.ACTIONS: actions, keys.NEXT_OBS: obs,
        keys.REWARD: (sign == torch.sign(obs[:, 0])).float(),
        keys.TERMINAL: torch.ones(n), keys.DISCOUNT: torch.ones(n),
        keys.MASK: torch.ones(n, H, dtype=torch.bool),
    }, batch_size=[n])


def mode_coordinate(obs: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
    """Each chunk's coordinate along its state's mode axis: +1 / -1 on the modes, 0 halfway between them."""
    mode = mode_of(obs)
    return (chunks * mode).sum((1, 2)) / mode.square().sum((1, 2))


@pytest.fixture(scope="module")
def frozen_phases():
    """Phases 1 and 2 on the toy, trained once for the module: frozen decoder, normaliser, critic."""
    torch.manual_seed(0)
    data = bandit_data(20_000, torch.Generator().manual_seed(0))
    normalizer = fitted_obs_normalizer(data[keys.OBS])
    flow = MeanFlow(FlowConfig(arch="mlp", width=64, depth=2, time_embed_dim=32, learning_rate=1e-3, ema_decay=0.99),
                    O, H, A, normalizer)
    for _ in range(800):
        flow.update(data[torch.randint(len(data), (BATCH,))])
    decoder = flow.frozen_decoder()

    critic = DistributionalCritic(CriticConfig(v_min=-0.5, v_max=1.5, num_bins=41, hidden_dim=64, num_layers=2,
                                               learning_rate=1e-3, target_update_rate=0.05), O, H, A, normalizer)
    for _ in range(400):
        critic.update(data[torch.randint(len(data), (BATCH,))])
    return data, normalizer, decoder, critic.requires_grad_(False).eval()


def train_planner(frozen_phases, temperature: float, steps: int = 400, **planner) -> tuple[LatentAWR, dict]:
    data, normalizer, decoder, critic = frozen_phases
    cfg = PlannerConfig(hidden_dim=64, num_blocks=2, learning_rate=1e-3,
                        weights=AWRWeightConfig(temperature=temperature, max_weight=100.0), **planner)
    learner = LatentAWR(cfg, O, H, A, decoder, critic.advantage, normalizer, critic.q_value)
    for _ in range(steps):
        metrics = learner.update(data[torch.randint(len(data), (BATCH,))])
    return learner, metrics


def held_out_states() -> torch.Tensor:
    """States with a clear better mode (|s_0| > 0.2), drawn apart from the training data."""
    obs = torch.rand(2000, O, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return obs[obs[:, 0].abs() > 0.2]


def better_mode_fraction(learner: LatentAWR) -> tuple[float, float, torch.Tensor]:
    """On held-out states with a clear better mode: fraction of decoded chunks on it, and between the modes."""
    obs = held_out_states()
    with torch.no_grad():
        coord = mode_coordinate(obs, learner.policy()(obs)) * torch.sign(obs[:, 0])  # +1 = better mode
    on_better = ((coord - 1).abs() < 0.25).float().mean().item()
    between = (coord.abs() < 0.5).float().mean().item()
    return on_better, between, coord


def test_planner_lands_on_the_better_mode_and_leaves_the_flow_untouched(frozen_phases):
    data, normalizer, decoder, critic = frozen_phases
    fingerprints = parameter_fingerprint(decoder), parameter_fingerprint(normalizer)
    with torch.no_grad():  # the critic ranks the modes: A ~ +0.5 on the better one, ~ -0.5 on the other
        advantage = critic.advantage(data[:2000])
    good = data[:2000][keys.REWARD] > 0.5
    assert advantage[good].mean() > 0.35 and advantage[~good].mean() < -0.35

    # the paper's ball, whose squash this test checks (the default shell: test_sphere_latent_stays_on_the_shell...)
    learner, metrics = train_planner(frozen_phases, temperature=0.1, latent="ball")
    on_better, between, coord = better_mode_fraction(learner)
    obs_norm = normalizer(data[:1000][keys.OBS])
    support = support_metrics(decoder, learner.planner, obs_norm, data[1000:3000][keys.ACTIONS])
    print(f"tau=0.1: on better mode {on_better:.1%}, between modes {between:.1%}, median coord "
          f"{coord.median():.3f}; {support}; last metrics {metrics}")
    assert on_better > 0.9 and between < 0.05
    assert (coord - 1).abs().median() < 0.1  # on the mode itself, not merely on its side
    # The hard constraint held: the flow did not move, z stayed inside the prior's typical radius (the raw
    # outputs push past it: the squash is active, see support/outside_typical_set), and the decoded chunks are
    # about as close to the data as data chunks are to each other.
    assert (parameter_fingerprint(decoder), parameter_fingerprint(normalizer)) == fingerprints
    with torch.no_grad():
        latent_norm = learner.planner(obs_norm).flatten(1).norm(dim=-1)
    assert (latent_norm < learner.planner.max_radius).all()
    assert support["support/nn_ratio"] < 2.0
    # ... while the same chunks measured against data shifted far beyond its own spread are flagged.
    shifted = support_metrics(decoder, learner.planner, obs_norm, data[1000:3000][keys.ACTIONS] + 1.0)
    assert shifted["support/nn_ratio"] > 10.0


def test_uniform_weights_do_not_pick_the_better_mode(frozen_phases):
    """tau -> large makes w ~ 1 (plain regression through the flow): nothing tells the planner which mode is
    better, so it does not end up on it. The weighting drives the choice. (Unweighted, the regression's
    minimiser is the data mean between the modes, and a continuous T(z; s) can decode it: on this toy the
    planner lands there, i.e. the frozen flow alone does not prevent mode averaging; small tau does.)"""
    learner, metrics = train_planner(frozen_phases, temperature=1e3)
    on_better, between, coord = better_mode_fraction(learner)
    print(f"tau=1e3: on better mode {on_better:.1%}, between modes {between:.1%}, weight ESS "
          f"{metrics['planner/weight_ess']:.3f}")
    assert metrics["planner/weight_ess"] > 0.99
    assert on_better < 0.65


def test_planner_through_a_two_jump_decoder_picks_the_better_mode_and_acts_through_it(frozen_phases):
    """planner.decode_steps=2: trained and acting through two mean-flow jumps of the same frozen flow."""
    data, normalizer, decoder, critic = frozen_phases
    learner, _ = train_planner(frozen_phases, temperature=0.1, decode_steps=2)
    on_better, between, _ = better_mode_fraction(learner)
    assert on_better > 0.9 and between < 0.05
    obs = held_out_states()[:64]
    with torch.no_grad():
        obs_norm = normalizer(obs)
        two_jumps = decoder.decode(learner.planner(obs_norm), obs_norm, 2)
        assert torch.equal(learner.policy()(obs), two_jumps)
        assert not torch.allclose(two_jumps, decoder.decode(learner.planner(obs_norm), obs_norm))
    with pytest.raises(ValueError, match="decode_steps must be >= 1"):
        PlannerConfig(decode_steps=0)


def test_planner_trained_in_bf16_picks_the_better_mode_and_acts_in_fp32(frozen_phases):
    """planner.compute_dtype=bfloat16: the planner, the frozen flow's jumps and the Q term under autocast; the
    planner's weights stay fp32, and the policy it hands on decodes in fp32."""
    data, normalizer, decoder, critic = frozen_phases
    learner, metrics = train_planner(frozen_phases, temperature=0.1, decode_steps=2, q_weight=0.1,
                                     compute_dtype="bfloat16")
    assert metrics["planner/q_loss"] < 0 and all(math.isfinite(v) for v in metrics.values())
    assert all(p.dtype == torch.float32 for p in learner.planner.parameters())
    on_better, between, _ = better_mode_fraction(learner)
    assert on_better > 0.9 and between < 0.05
    obs = held_out_states()[:64]
    with torch.no_grad():
        assert learner.policy()(obs).dtype == torch.float32
    with pytest.raises(ValueError, match="PlannerConfig.compute_dtype"):
        PlannerConfig(compute_dtype="half")


def test_cosine_schedule_decays_the_planner_rate_to_zero_and_still_picks_the_better_mode(frozen_phases):
    """planner.lr_schedule=cosine (IQL's actor schedule): the rate follows the half cosine over num_steps, counted
    by Adam's own steps (which a checkpoint carries), and the planner still lands on the better mode."""
    import math

    learner, _ = train_planner(frozen_phases, temperature=0.1, steps=400, num_steps=400, lr_schedule="cosine")
    optimizer = learner.optimizers["planner"]
    assert adam_steps(optimizer) == 400
    # the rate set before the last step: step 399 of 400
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 399 / 400)))
    on_better, between, _ = better_mode_fraction(learner)
    assert on_better > 0.9 and between < 0.05
    data, normalizer, decoder, critic = frozen_phases
    restored = LatentAWR(learner.cfg, O, H, A, decoder, critic.advantage, normalizer)
    restored.optimizers["planner"].load_state_dict(optimizer.state_dict())
    assert adam_steps(restored.optimizers["planner"]) == 400  # a resumed run continues the schedule
    with pytest.raises(ValueError, match="lr_schedule"):
        PlannerConfig(lr_schedule="linear")


def test_state_normalization_gives_every_state_the_same_total_weight_and_keeps_each_states_ranking():
    """Z(s) from the flow's draws: at states where every chunk is about as good (w = 1) and at states where a tenth
    of the draws are lucky (w = 100, the rest 0.01: mean ~10), the data's normalized weights average ~1 in both,
    where the raw weights give the second ten times the pull; within a state the lucky chunks stay on top."""
    import math
    from types import SimpleNamespace

    from lawr_ext.algorithms.planner import state_mean_weight

    torch.manual_seed(0)
    n = 4000
    spread = torch.arange(n) % 2 == 0                                      # which kind of state
    lucky_draw = lambda m: torch.where(torch.rand(m) < 0.1, 1.0, -1.0)     # the flow proposes the lucky chunk 10%
    decoder = SimpleNamespace(sample=lambda obs_norm: lucky_draw(len(obs_norm))[:, None, None].expand(-1, H, A))

    def advantage_fn(batch):
        lucky = batch[keys.ACTIONS].mean((1, 2)) > 0
        return torch.where(batch[keys.OBS][:, 0] > 0, torch.where(lucky, math.log(100), math.log(0.01)), 0.0)

    obs = torch.stack([torch.where(spread, 1.0, -1.0), torch.zeros(n)], dim=1)
    actions = lucky_draw(n)[:, None, None].expand(-1, H, A).clone()        # the data: draws of the same behaviour
    batch = TensorDict({keys.OBS: obs, keys.ACTIONS: actions}, batch_size=[n])
    weights = AWRWeightConfig(temperature=1.0, max_weight=100.0)
    raw = awr_weights(advantage_fn(batch), weights)
    normalized = (raw / state_mean_weight(decoder, advantage_fn, weights, batch, obs, num_draws=64)).clamp(max=100)
    lucky = actions.mean((1, 2)) > 0
    assert raw[spread].mean() > 8 * raw[~spread].mean()                   # raw: the spread states dominate
    assert normalized[~spread].mean() == pytest.approx(1.0)
    assert normalized[spread].mean() == pytest.approx(1.0, rel=0.3)
    assert normalized[spread & lucky].median() > 1000 * normalized[spread & ~lucky].median()
    assert batch[keys.ACTIONS].equal(actions)                              # the batch itself is left as it was


def test_planner_with_state_normalized_weights_still_picks_the_better_mode(frozen_phases):
    """On the bandit, where every state's advantages spread alike, the normalization changes nothing essential:
    the planner still lands on the better mode. A one-step advantage cannot score the draws: refused."""
    from lawr_ext.configs.train import load_train_config

    learner, metrics = train_planner(frozen_phases, temperature=0.1, state_normalization_samples=4)
    on_better, between, _ = better_mode_fraction(learner)
    assert on_better > 0.9 and between < 0.05
    assert 0 < metrics["planner/weight_ess"] and 0 < metrics["planner/raw_weight_ess"]
    with pytest.raises(ValueError, match="state_normalization_samples needs critic.advantage=q_minus_v"):
        load_train_config("Bimanual-Chunk", ["planner.state_normalization_samples=4", "critic.advantage=one_step"])
    with pytest.raises(ValueError, match="state_normalization_samples must be >= 0"):
        PlannerConfig(state_normalization_samples=-1)


def test_planner_refuses_a_trainable_flow(frozen_phases):
    data, normalizer, decoder, critic = frozen_phases
    trainable = MeanFlow(FlowConfig(arch="mlp", width=16, depth=1, time_embed_dim=8), O, H, A, normalizer).decoder
    with pytest.raises(ValueError, match="flow decoder must be frozen"):
        LatentAWR(PlannerConfig(hidden_dim=16, num_blocks=1), O, H, A, trainable, critic.advantage, normalizer)



def test_sphere_latent_stays_on_the_shell_and_picks_the_better_mode(frozen_phases):
    """latent="sphere" (LPS's constraint): every z has norm sqrt(d), and the weighted regression still commits to
    the better mode, as in the ball."""
    data, normalizer, decoder, critic = frozen_phases
    learner, metrics = train_planner(frozen_phases, temperature=0.1, latent="sphere")
    on_better, between, coord = better_mode_fraction(learner)
    print(f"sphere, tau=0.1: on better mode {on_better:.1%}, between {between:.1%}")
    with torch.no_grad():
        norms = learner.planner(normalizer(data[:500][keys.OBS])).flatten(1).norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, (H * A) ** 0.5), rtol=1e-5)
    assert on_better > 0.9 and between < 0.05


def test_q_term_picks_the_better_side_where_uniform_weights_do_not(frozen_phases):
    """With uniform AWR weights nothing in the regression ranks the modes (test above); a dominant
    -Q(s, T(pi(s))) term through the frozen flow and critic (LPS's objective) does: the decoded chunks move to
    the better side and their Q reaches the critic's maximum.

    What it does not do here, measured on this toy: keep the chunks on the better mode itself. The critic, fitted
    on the two modes only, is flat (Q ~ 1) from coord 0.3 outwards, so the uniform regression's pull towards the
    data mean wins there: median coord ~0.9 at 400 steps, 0.45-0.6 at 1600. And it is flat (Q ~ 0) on the worse
    side, so a planner seed that starts there gets no gradient: 2 of 8 seeds leave 13-18% of the states on the
    worse mode at 400 steps. Hence three planner seeds, averaged; and it is the AWR weighting (small tau, tests
    above) that commits to the mode."""
    data, normalizer, decoder, critic = frozen_phases
    obs = held_out_states()
    better_side, q_mean = {}, {}
    for name, q_weight in (("q_term", 100.0), ("uniform", 0.0)):
        sides, qs = [], []
        for seed in range(3):
            torch.manual_seed(seed)
            learner, metrics = train_planner(frozen_phases, temperature=1e3, latent="sphere", q_weight=q_weight)
            assert metrics["planner/weight_ess"] > 0.99
            assert metrics["planner/q_loss"] < 0 if q_weight > 0 else metrics["planner/q_loss"] == 0
            with torch.no_grad():
                chunks = learner.policy()(obs)
                qs.append(critic.q_value(normalizer(obs), chunks).mean().item())
            sides.append((mode_coordinate(obs, chunks) * torch.sign(obs[:, 0]) > 0.2).float().mean().item())
        better_side[name], q_mean[name] = statistics.mean(sides), statistics.mean(qs)
    print(f"on the better side: {better_side}, mean Q of the decoded chunks: {q_mean}")
    assert better_side["q_term"] > 0.85 and q_mean["q_term"] > 0.9
    assert better_side["uniform"] < 0.5 and q_mean["uniform"] < 0.75


def test_q_term_needs_a_critic(frozen_phases):
    data, normalizer, decoder, critic = frozen_phases
    with pytest.raises(ValueError, match="q_weight > 0 needs"):
        LatentAWR(PlannerConfig(hidden_dim=16, num_blocks=1, q_weight=0.5), O, H, A, decoder, critic.advantage, normalizer)


# --- the peers that steer the same frozen flow with another objective (algorithms/baselines/) ----------------

def _peer_products(frozen_phases) -> StageInputs:
    data, normalizer, decoder, critic = frozen_phases
    return StageInputs(O, H, A, {"flow": BehaviorModel(decoder, normalizer, ActionNormalizer(A)), "critic": critic})


def _assert_on_the_better_mode_and_on_the_flow(frozen_phases, learner, actor, name: str) -> None:
    """Most decoded chunks on the better mode itself (not between the modes), about as close to the data as data
    chunks are to each other, and the frozen flow untouched."""
    data, normalizer, decoder, critic = frozen_phases
    on_better, between, coord = better_mode_fraction(learner)
    obs_norm = normalizer(data[:1000][keys.OBS])
    support = support_metrics(decoder, actor, obs_norm, data[1000:3000][keys.ACTIONS])
    print(f"{name}: on better mode {on_better:.1%}, between {between:.1%}, median coord {coord.median():.3f}, "
          f"nn ratio {support['support/nn_ratio']:.2f}")
    assert on_better > 0.9 and between < 0.05
    assert (coord - 1).abs().median() < 0.15
    assert support["support/nn_ratio"] < 2.0


@pytest.mark.parametrize("critic_source", ["own", "phase2"])
def test_lps_steers_onto_the_better_mode_through_the_frozen_flow(frozen_phases, critic_source):
    """LPS: z on the sphere climbs -Q(s, T(pi(s))) alone, Q its own TD critic (as published) or, in the ablation,
    the frozen Phase-2 critic (the planner's learner with the AWR term off). The critic ranks the modes, the
    frozen flow keeps the chunks on them."""
    data, normalizer, decoder, critic = frozen_phases
    fingerprint = parameter_fingerprint(decoder)
    inputs = _peer_products(frozen_phases)
    cfg = matched_config("lps", FlowConfig(), CriticConfig(hidden_dim=64, num_layers=2, learning_rate=1e-3),
                         PlannerConfig(hidden_dim=64, num_blocks=2), learning_rate=1e-3, critic_source=critic_source)
    learner = BASELINES["lps"].build(cfg, inputs)
    for _ in range(400):
        metrics = learner.update(data[torch.randint(len(data), (BATCH,))])
    if critic_source == "phase2":
        assert metrics["planner/awr_loss"] == 0 and "planner/advantage_mean" not in metrics  # no AWR at all
    else:  # its own critic, Phase 2's only logged
        assert "lps/phase2_q" in metrics and "critic/q_loss" in metrics
    _assert_on_the_better_mode_and_on_the_flow(frozen_phases, learner, learner.planner, f"LPS ({critic_source})")
    with torch.no_grad():
        norms = learner.planner(normalizer(data[:500][keys.OBS])).flatten(1).norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, (H * A) ** 0.5), rtol=1e-5)
    assert parameter_fingerprint(decoder) == fingerprint


@pytest.mark.parametrize("latent", ["box", "sphere"])
def test_dsrl_na_aliases_the_action_critic_and_steers_onto_the_better_mode(frozen_phases, latent):
    """DSRL-NA: Q^W(s, w) is regressed onto the frozen Q^A(s, T(w; s)) for prior noise w, and the latent actor
    climbs Q^W alone (no gradient through the flow)."""
    data, normalizer, decoder, critic = frozen_phases
    fingerprint = parameter_fingerprint(decoder)
    cfg = matched_config("dsrl_na", FlowConfig(), CriticConfig(hidden_dim=64, num_layers=2, learning_rate=1e-3),
                         PlannerConfig(hidden_dim=64, num_blocks=2), latent=latent, learning_rate=1e-3)
    learner = BASELINES["dsrl_na"].build(cfg, _peer_products(frozen_phases))
    for _ in range(400):
        learner.update(data[torch.randint(len(data), (BATCH,))])
    obs_norm = normalizer(data[:2000][keys.OBS])
    with torch.no_grad():  # the aliasing holds where it was trained: on the prior's noise
        noise = torch.randn(2000, H, A)
        q_latent = learner.noise_critic.heads(obs_norm, noise)
        q_action = critic.q_heads(obs_norm, decoder.decode(noise, obs_norm).clamp(-1, 1))
        z = learner.actor(obs_norm)
    error, spread = (q_latent - q_action).abs().mean(), (q_action - q_action.mean()).abs().mean()
    print(f"DSRL-NA ({latent}): |Q^W - Q^A| {error:.3f} against Q^A's own spread {spread:.3f}")
    assert error < 0.5 * spread  # a constant Q^W would be off by the whole spread
    _assert_on_the_better_mode_and_on_the_flow(frozen_phases, learner, learner.actor, f"DSRL-NA ({latent})")
    if latent == "box":
        assert z.abs().max() <= cfg.box_magnitude
    assert parameter_fingerprint(decoder) == fingerprint
