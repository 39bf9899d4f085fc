"""Phase 2: the HL-Gauss transform, and critics that recover the exact values of a chain MDP.

The chain: states 0..6, both ends terminal, every episode starts in an interior state. Actions are
-1 / +1 (one DoF), moving one state left / right; the behaviour policy goes right with probability 0.6.
Entering the right end pays +1, entering the left end pays -0.5. The exact V(s) (behaviour value for
kappa = 0.5, the expectile fixed point for kappa > 0.5) comes from value iteration over all 2^H chunks,
and since transitions are deterministic the exact Q(s, chunk) is the discounted reward along the chunk
plus gamma^k V(s_k). Returns lie in [-0.5, 1]; the tolerance is stated relative to that range.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tensordict import TensorDict
from conftest import fitted_obs_normalizer

from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.data import keys
from lawr_ext.modules.hl_gauss import HLGauss

NUM_STATES, GAMMA, P_RIGHT = 7, 0.9, 0.6
TERMINALS = {0: -0.5, NUM_STATES - 1: 1.0}   # terminal state -> reward for entering it
INTERIOR = list(range(1, NUM_STATES - 1))
RETURN_RANGE = 1.5                           # max - min possible return
TOLERANCE = 0.05 * RETURN_RANGE              # |learned - true| allowed for every state / chunk


def step(s: int, a: int) -> tuple[int, float, bool]:
    s_next = s + a
    return s_next, TERMINALS.get(s_next, 0.0), s_next in TERMINALS


def chunk_return(s: int, chunk: tuple[int, ...], values: dict[int, float]) -> tuple[list[int], float]:
    """The chunk as the dataset stores it (actions after the episode end repeat the last real one) and its Q."""
    ret, stored = 0.0, []
    for i, a in enumerate(chunk):
        stored.append(a)
        s, reward, done = step(s, a)
        ret += GAMMA**i * reward
        if done:
            return stored + [a] * (len(chunk) - len(stored)), ret
    return stored, ret + GAMMA ** len(chunk) * values[s]


def true_state_values(horizon: int, expectile: float = 0.5) -> dict[int, float]:
    """Fixed point of V(s) = expectile_kappa over behaviour chunks of Q(s, chunk) (kappa = 0.5: the mean).

    This is what the critic's in-sample loss converges to: the expectile-weighted cross-entropy is minimised
    where sum_i p_i |kappa - 1(q_i < V)| (q_i - V) = 0, the expectile's defining equation. Solved by value
    iteration with one reweighting step per sweep (gamma^300 is negligible).
    """
    values = {s: 0.0 for s in INTERIOR}
    chunks = list(itertools.product((-1, 1), repeat=horizon))
    probs = torch.tensor([P_RIGHT ** c.count(1) * (1 - P_RIGHT) ** c.count(-1) for c in chunks], dtype=torch.float64)
    for _ in range(300):
        updated = {}
        for s in INTERIOR:
            q = torch.tensor([chunk_return(s, c, values)[1] for c in chunks], dtype=torch.float64)
            w = probs * (expectile - (q < values[s]).double()).abs()
            updated[s] = float((w * q).sum() / w.sum())
        values = updated
    return values


def one_hot(s: int) -> list[float]:
    return [float(i == s) for i in range(NUM_STATES)]


def chain_dataset(horizon: int, num_episodes: int, generator: torch.Generator) -> TensorDict:
    """Behaviour-policy episodes cut into chunks exactly as keys.py specifies (padding, mask, gamma^k)."""
    fields = (keys.OBS, keys.ACTIONS, keys.REWARD, keys.NEXT_OBS, keys.TERMINAL, keys.DISCOUNT, keys.MASK)
    rows = {k: [] for k in fields}
    for _ in range(num_episodes):
        s = INTERIOR[int(torch.randint(len(INTERIOR), (1,), generator=generator))]
        states, actions, rewards, done = [s], [], [], False
        while not done:
            a = 1 if torch.rand((), generator=generator) < P_RIGHT else -1
            s, reward, done = step(s, a)
            states.append(s)
            actions.append(a)
            rewards.append(reward)
        T = len(actions)
        for t in range(T):
            k = min(horizon, T - t)
            chunk = actions[t : t + k] + [actions[t + k - 1]] * (horizon - k)
            rows[keys.OBS].append(one_hot(states[t]))
            rows[keys.ACTIONS].append([[float(a)] for a in chunk])
            rows[keys.REWARD].append(sum(GAMMA**i * rewards[t + i] for i in range(k)))
            rows[keys.NEXT_OBS].append(one_hot(states[t + k]))
            rows[keys.TERMINAL].append(float(t + k == T))
            rows[keys.DISCOUNT].append(GAMMA**k)
            rows[keys.MASK].append([i < k for i in range(horizon)])
    data = {k: torch.tensor(v) for k, v in rows.items()}
    return TensorDict(data, batch_size=[len(data[keys.OBS])])


def train_critic(horizon: int, expectile: float, steps: int = 1000) -> tuple[DistributionalCritic, TensorDict]:
    data = chain_dataset(horizon, num_episodes=1000, generator=torch.Generator().manual_seed(horizon))
    cfg = CriticConfig(v_min=-1.0, v_max=1.5, num_bins=51, hidden_dim=64, num_layers=2, learning_rate=1e-3,
                       target_update_rate=0.05, expectile=expectile)
    critic = DistributionalCritic(cfg, NUM_STATES, horizon, 1, fitted_obs_normalizer(data[keys.OBS]))
    for _ in range(steps):
        metrics = critic.update(data[torch.randint(len(data), (256,))])
    assert all(map(math.isfinite, metrics.values())), metrics
    return critic, data


def test_hl_gauss_transform():
    hl = HLGauss(v_min=-1.0, v_max=2.0, num_bins=31, sigma_ratio=0.75)
    bin_width = 3.0 / 31
    targets = torch.linspace(-3.0, 4.0, 701)
    probs = hl.target_probs(targets)
    assert probs.shape == (701, 31) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(701))
    expectation = (probs * hl.centers).sum(-1)
    clipped = targets.clamp(-1.0, 2.0)
    # Inside the support the histogram's mean is the target itself (up to discretisation).
    interior = (targets > -1.0 + 3 * hl.sigma) & (targets < 2.0 - 3 * hl.sigma)
    assert (expectation[interior] - targets[interior]).abs().max() < 0.01 * bin_width
    # Near and beyond the ends the Gaussian is truncated by the support: the mean moves inward by < 1 bin.
    assert (expectation - clipped).abs().max() < bin_width
    # Logits equal to the log target histogram decode to the same expectation, and minimise the loss.
    logits = probs.clamp_min(1e-12).log()
    torch.testing.assert_close(hl.expectation(logits), expectation)
    assert (hl.loss(logits, targets) <= hl.loss(logits.roll(1, dims=0), targets) + 1e-5).all()


def test_critic_config_rejects_bad_values():
    with pytest.raises(ValueError, match="v_max"):
        CriticConfig(v_min=1.0, v_max=1.0)
    with pytest.raises(ValueError, match="advantage"):
        CriticConfig(advantage="gae")


@pytest.mark.parametrize(("horizon", "expectile"), [(1, 0.5), (3, 0.5), (3, 0.9)])
def test_critic_matches_true_chain_values(horizon: int, expectile: float):
    critic, data = train_critic(horizon, expectile)
    values = true_state_values(horizon, expectile)
    normalize = critic.obs_normalizer
    with torch.no_grad():
        v_learned = critic.value(normalize(torch.tensor([one_hot(s) for s in INTERIOR])))
        v_true = torch.tensor([values[s] for s in INTERIOR])
        v_error = (v_learned - v_true).abs().max().item()
        q_errors = []
        for s in INTERIOR:
            for chunk in itertools.product((-1, 1), repeat=horizon):
                stored, q_true = chunk_return(s, chunk, values)
                q_learned = critic.q_value(normalize(torch.tensor([one_hot(s)])), torch.tensor([[[float(a)] for a in stored]]))
                q_errors.append(abs(q_learned.item() - q_true))
    print(f"H={horizon} kappa={expectile}: max|V-V_true|={v_error:.4f} max|Q-Q_true|={max(q_errors):.4f} "
          f"(tolerance {TOLERANCE:.3f}); V_true={v_true.numpy().round(3)} V={v_learned.numpy().round(3)}")
    assert v_error < TOLERANCE
    assert max(q_errors) < TOLERANCE

    # Both advantage forms agree with the true A = Q(s, a) - V(s) on dataset chunks.
    batch = data[:2000]
    states = [int(o.argmax()) for o in batch[keys.OBS]]
    q_true = torch.tensor([chunk_return(s, tuple(int(a) for a in c.flatten()), values)[1]
                           for s, c in zip(states, batch[keys.ACTIONS])])
    a_true = q_true - torch.tensor([values[s] for s in states])
    for form in ("q_minus_v", "one_step"):
        critic.cfg.advantage = form
        assert (critic.advantage(batch) - a_true).abs().mean() < TOLERANCE / 2, form
    if expectile == 0.5:  # the behaviour's own chunks are, on average, neither better nor worse than V
        assert critic.advantage(batch).mean().abs() < 0.02 * RETURN_RANGE
