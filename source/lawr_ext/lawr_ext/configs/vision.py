"""The image encoder of image tasks: how Phase 1 turns camera frames into the features every network reads."""

from __future__ import annotations

from dataclasses import dataclass

ENCODER_ARCHS = ("nature_cnn",)


@dataclass
class EncoderConfig:
    """The shared vision encoder (``modules/vision.py``), part of Phase 1's settings (``flow.encoder``): Phase 1
    trains it with the flow and freezes both; every later stage reads its frozen features (the critic may train a
    copy of its own, ``critic.finetune_encoder``). Used only when the dataset holds camera frames."""

    arch: str = "nature_cnn"        # Mnih et al. 2015's three conv layers (the last padded), one CNN for all cameras
    features: int = 64              # features per camera; the networks read [state (normalized), C x features]
    # DrQ's random shift while training: pad each frame by this many pixels (edge-replicated) and crop back at a
    # random offset; 0: none. Not applied in evaluation or export
    shift: int = 4
    # a local file (torch.save of the per-camera CNN's state_dict, ``NatureCNN``) to start from instead of random
    # weights; "" = train from scratch. Nothing is downloaded
    pretrained: str = ""
    train_pretrained: bool = True   # with ``pretrained``: Phase 1 trains it on (True) or keeps it fixed (False)

    def __post_init__(self) -> None:
        if self.arch not in ENCODER_ARCHS:
            raise ValueError(f"EncoderConfig.arch: expected one of {ENCODER_ARCHS}, got {self.arch!r}")
        if self.features < 1:
            raise ValueError(f"EncoderConfig.features: must be >= 1, got {self.features}")
        if self.shift < 0:
            raise ValueError(f"EncoderConfig.shift: must be >= 0, got {self.shift}")
