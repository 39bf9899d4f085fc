"""A trained ChunkPolicy as one self-contained TorchScript / ONNX file with its metadata inside; the robot side
that reads it back is ``lawr_ext/deploy.py`` (numpy and onnxruntime only)."""

from lawr_ext.deploy import METADATA_KEY, check_metadata
from lawr_ext.export.exporter import (build_metadata, export_onnx, export_torchscript, load_onnx, load_torchscript,
                                      max_abs_diff, run_exported)

__all__ = ["METADATA_KEY", "build_metadata", "check_metadata", "export_onnx", "export_torchscript",
           "load_onnx", "load_torchscript", "max_abs_diff", "run_exported"]
