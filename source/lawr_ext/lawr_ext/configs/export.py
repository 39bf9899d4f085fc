"""Export config: which files ``lawr_ext.export.export_policy`` writes and how they are checked."""

from __future__ import annotations

from dataclasses import dataclass

#: What an export can write (lawr_ext.export.exporter): ONNX, a torch.export program, an AOTInductor package.
EXPORT_FORMATS = ("onnx", "pt2", "aoti")


@dataclass
class ExportConfig:
    # aoti is opt-in: compiling even a toy policy takes ~30 s and a C++ compiler
    formats: tuple[str, ...] = ("onnx", "pt2")
    onnx_opset: int = 18           # rsl_rl / Isaac Lab's choice: works across x86 and aarch64 runtimes
    parity_atol: float = 1e-4      # max |exported - eager| accepted by the post-export check
    parity_batch: int = 64         # observations of each kind (random, within the training range) it runs

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(EXPORT_FORMATS)
        if unknown or not self.formats:
            raise ValueError(f"ExportConfig.formats={self.formats}: choose from {EXPORT_FORMATS}")
