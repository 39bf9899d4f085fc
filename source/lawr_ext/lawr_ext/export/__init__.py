"""A trained ChunkPolicy as self-contained files (ONNX, a torch.export ``.pt2`` program, an AOTInductor package),
each with its metadata inside, traced once and checked against the eager policy before it is written
(:func:`export_policy`); the robot side that reads the ONNX file back is ``lawr_ext/deploy.py`` (numpy and
onnxruntime only)."""

from lawr_ext.deploy import EXPORT_FORMAT_VERSION, METADATA_KEY, check_metadata
from lawr_ext.export.exporter import (FILE_NAMES, build_metadata, export_aoti, export_onnx, export_pt2, load_aoti,
                                      load_exported, load_onnx, load_pt2, max_abs_diff, run_exported, trace)
from lawr_ext.export.from_run import export_policy

__all__ = ["EXPORT_FORMAT_VERSION", "FILE_NAMES", "METADATA_KEY", "build_metadata", "check_metadata", "export_aoti",
           "export_onnx", "export_policy", "export_pt2", "load_aoti", "load_exported", "load_onnx", "load_pt2",
           "max_abs_diff", "run_exported", "trace"]
