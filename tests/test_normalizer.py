import pytest
import torch

from lawr_ext.modules.normalizer import fit_obs_normalizer


def test_fitted_normalizer_standardizes_dataset_and_stays_frozen():
    scale, shift = torch.tensor([5.0, 0.1, 1.0]), torch.tensor([3.0, -2.0, 0.0])
    obs = torch.randn(4000, 3) * scale + shift
    normalizer = fit_obs_normalizer(obs)

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


@pytest.mark.parametrize("bad", [torch.randn(10), torch.randn(1, 3), torch.tensor([[0.0, float("nan")]] * 4)])
def test_bad_observations_raise_a_clear_error(bad):
    with pytest.raises(ValueError, match="fit_obs_normalizer"):
        fit_obs_normalizer(bad)
