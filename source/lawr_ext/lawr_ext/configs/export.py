"""Export config: which files ``scripts/export.py`` writes and how the graph is checked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExportConfig:
    formats: tuple[str, ...] = ("onnx", "torchscript")  # files to write: policy.onnx and/or policy.pt
    onnx_opset: int = 18           # rsl_rl / Isaac Lab's choice: works across x86 and aarch64 runtimes
    parity_atol: float = 1e-4      # max |exported - eager| accepted by the post-export check
    parity_batch: int = 64         # random observations used by the post-export check

    def __post_init__(self) -> None:
        unknown = set(self.formats) - {"onnx", "torchscript"}
        if unknown or not self.formats:
            raise ValueError(f"ExportConfig.formats={self.formats}: choose from ('onnx', 'torchscript')")
