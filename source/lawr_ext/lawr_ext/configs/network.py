"""The chunk network every flow-shaped model is built from: (z_t, t, r, obs) -> action chunk.

The Phase-1 flow, FQL's one-step policy, OFQL's flow and the diffusion denoiser are all this network
(``algorithms/flow.py: build_chunk_net``); only the objective they train it with differs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

CHUNK_NET_ARCHS = ("transformer", "mlp")
MLP_CONDITIONINGS = ("concat", "film")


@dataclass
class ChunkNetConfig:
    arch: str = "transformer"       # "transformer": JiT-like, a token per chunk step; "mlp": ResidualMLP, flat chunk
    width: int = 256                # token width (transformer) / hidden width (mlp)
    depth: int = 6                  # transformer blocks / residual blocks
    num_heads: int = 4              # attention heads (transformer only); must divide width
    mlp_ratio: int = 4              # transformer feed-forward expansion
    time_embed_dim: int = 256       # sinusoidal features per time input (t and t - r) before their MLP
    # How the mlp arch reads (t, r, obs): "concat", a condition vector beside the flat chunk at the input only;
    # "film", that and a shift and scale of every residual block's normalized input computed from the condition
    # (zero-initialized: training starts from the concat network). The transformer always modulates (adaLN-Zero).
    conditioning: str = "concat"

    def __post_init__(self) -> None:
        name = type(self).__name__  # subclasses (FlowConfig) report their own name
        if self.arch not in CHUNK_NET_ARCHS:
            raise ValueError(f"{name}.arch: expected one of {CHUNK_NET_ARCHS}, got {self.arch!r}")
        if self.conditioning not in MLP_CONDITIONINGS:
            raise ValueError(f"{name}.conditioning: expected one of {MLP_CONDITIONINGS}, got {self.conditioning!r}")
        for field_name in ("width", "depth", "num_heads", "mlp_ratio", "time_embed_dim"):  # before any division
            if getattr(self, field_name) < 1:
                raise ValueError(f"{name}.{field_name}: must be >= 1, got {getattr(self, field_name)}")
        if self.arch == "transformer" and self.width % self.num_heads != 0:
            raise ValueError(f"{name}.num_heads: {self.num_heads} does not divide width {self.width}")
        if self.time_embed_dim % 2 != 0:
            raise ValueError(f"{name}.time_embed_dim: must be even (cos/sin pairs), got {self.time_embed_dim}")

    @classmethod
    def of(cls, cfg: ChunkNetConfig) -> ChunkNetConfig:
        """Just the network fields of ``cfg`` (e.g. a ``FlowConfig``): the same network, without its training."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})
