"""A trained ChunkPolicy as one self-contained TorchScript / ONNX file with its metadata inside."""

from lawr_ext.export.exporter import (METADATA_KEY, build_metadata, check_metadata, export_onnx,
                                      export_torchscript, load_onnx, load_torchscript, max_abs_diff, run_exported)

__all__ = ["METADATA_KEY", "build_metadata", "check_metadata", "export_onnx", "export_torchscript",
           "load_onnx", "load_torchscript", "max_abs_diff", "run_exported"]
