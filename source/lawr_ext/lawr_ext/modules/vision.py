"""The vision encoder of image tasks, and the one observation format every policy and learner takes.

An image task's observation is joint state [B, S] plus uint8 camera frames [B, C, H, W, 3]. Policies and learners
take it as ONE flat float tensor, the *packed observation* ``[state, frames flattened as 0..255 values]``
(:func:`pack_observation`), so the flat-observation path (batches, rollouts, policies' ``forward(obs)``) is
unchanged; the :class:`ObservationEncoder` then stands where the state normalizer stands in a state task (the
behaviour model's ``obs_normalizer``): it unpacks, normalizes the state, encodes each camera's frame with one shared
CNN and returns [normalized state, C x features], the vector every network reads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def pack_observation(state: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """[B, S] joint state + uint8 [B, C, H, W, 3] frames -> float [B, S + C*H*W*3] (frames as 0..255 values)."""
    return torch.cat([state.float(), images.flatten(1).to(state.device, torch.float32)], dim=1)


class NatureCNN(nn.Module):
    """Mnih et al. (2015)'s encoder: conv 8x8/4 (32), 4x4/2 (64), 3x3/1 (64, padded so 32 x 32 frames fit), then
    a linear layer to ``features`` with LayerNorm. Input float [N, 3, H, W] in [0, 1]."""

    def __init__(self, height: int, width: int, features: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, 3, height, width)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, features), nn.LayerNorm(features))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(frames))


def random_shift(frames: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ's augmentation: pad [N, 3, H, W] by ``pad`` pixels (edge-replicated) and crop H x W back at a random
    integer offset per frame (torch's global RNG)."""
    n, _, h, w = frames.shape
    padded = F.pad(frames, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), device=frames.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=frames.device)
    rows = (dy[:, None] + torch.arange(h, device=frames.device))[:, :, None].expand(n, h, w)
    cols = (dx[:, None] + torch.arange(w, device=frames.device))[:, None, :].expand(n, h, w)
    index = (rows * (w + 2 * pad) + cols).flatten(1)[:, None, :].expand(n, 3, h * w)
    return padded.flatten(2).gather(2, index).view(n, 3, h, w)


class ObservationEncoder(nn.Module):
    """Packed observation [B, S + C*H*W*3] -> features [B, S + C*features]: the state through the fitted (frozen)
    state normalizer, each camera's frame through the shared CNN (random shifts while in train mode)."""

    def __init__(self, state_normalizer: nn.Module, state_dim: int, image_shape: tuple[int, int, int],
                 features: int = 64, shift: int = 4):
        super().__init__()
        self.state_normalizer = state_normalizer
        self.state_dim = state_dim
        self.image_shape = tuple(int(d) for d in image_shape)  # (cameras, H, W)
        self.shift = shift
        cameras, height, width = self.image_shape
        self.cnn = NatureCNN(height, width, features)
        self.input_dim = state_dim + cameras * height * width * 3
        self.output_dim = state_dim + cameras * features

    def train(self, mode: bool = True) -> ObservationEncoder:
        super().train(mode)
        self.state_normalizer.eval()  # fitted once on the dataset and frozen: never updated, in any mode
        return self

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-1] != self.input_dim:
            raise ValueError(f"ObservationEncoder: observations have dim {obs.shape[-1]}, expected {self.input_dim} "
                             f"(state {self.state_dim} + frames {self.image_shape} x 3, packed)")
        cameras, height, width = self.image_shape
        state = self.state_normalizer(obs[:, :self.state_dim])
        frames = obs[:, self.state_dim:].reshape(-1, height, width, 3).permute(0, 3, 1, 2) / 255.0
        if self.training and self.shift > 0:
            frames = random_shift(frames, self.shift)
        return torch.cat([state, self.cnn(frames).view(obs.shape[0], -1)], dim=1)

    def load_pretrained(self, path: str | Path, trainable: bool = True) -> None:
        """Start the CNN from a local file (``torch.save(NatureCNN.state_dict())``); a missing file or other shapes
        are one-line errors naming the file. ``trainable=False`` keeps it fixed."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: pretrained encoder file not found (flow.encoder.pretrained)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            self.cnn.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}: not a NatureCNN state_dict for frames {self.image_shape[1:]} "
                             f"({' '.join(str(err).split())[:200]})") from None
        self.cnn.requires_grad_(trainable)


def feature_dim(state_dim: int, image_shape: tuple[int, int, int] | None, features: int) -> int:
    """What the networks read: the state's dim, plus ``features`` per camera when there are frames."""
    return state_dim if image_shape is None else state_dim + image_shape[0] * features
