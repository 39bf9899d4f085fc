"""Export a trained policy (L-AWR: normalizer -> planner -> frozen one-step flow; or a baseline's) as ONNX, a
torch.export ``.pt2`` program and, when asked, an AOTInductor package: ``lawr_ext.export.export_policy``.

    python scripts/export.py --checkpoint runs/Bimanual-Chunk/<run>                  # policy.onnx, policy.pt2
    python scripts/export.py --checkpoint runs/<run> --out deploy/ --formats onnx
    python scripts/export.py --checkpoint runs/<run> --formats onnx pt2 aoti         # + policy.aoti.pt2 (C++)
    python scripts/export.py --checkpoint runs/<run> --policy act                    # any method of the run

The policy is traced once with torch.export (dynamic batch) and every file is written from that program, into
``<run_dir>/export`` by default (``<run_dir>/export/<policy>`` for a baseline). Each carries its metadata (task,
H, obs dim, control rate, how the run's evaluation executed chunks: exec_horizon and temporal ensembling, export
format version, config hash; and, where the task registers an action spec, joint order, action scaling, joint
limits and servo speeds: lawr_ext/deploy.py; the per-dimension range of the observations the run trained on, read
from its dataset), and is checked against the eager policy on random observations and on observations within
the training range: refused if they differ by more than ``ExportConfig.parity_atol`` or a chunk is not finite. A
policy that draws noise (flow BC, FQL, QC, diffusion ...) draws it inside the graph too: its files are checked
for shape and finiteness only. The checks run on the temporary file: only a file that passed replaces what
``--out`` held, so a refused export never overwrites a good one, and leaves no empty folder behind.

The ONNX file carries a sha256 digest over graph and metadata; ``--signing_key FILE`` (default: the file named by
$LAWR_SIGNING_KEY_FILE) adds an HMAC signature that only holders of the key can produce. Deploy the .onnx with
onnxruntime alone: see scripts/deploy_onnx.py. TorchScript is not written: torch 2.11 deprecates it for torch.export.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lawr_ext.algorithms.registry import METHODS
from lawr_ext.configs.export import EXPORT_FORMATS, ExportConfig
from lawr_ext.deploy import read_signing_key
from lawr_ext.export import export_policy
from lawr_ext.utils.cli import run_main

SIGNING_KEY_ENV = "LAWR_SIGNING_KEY_FILE"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="run directory or a <stage>/final.pt inside it")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <run_dir>/export)")
    parser.add_argument("--formats", nargs="+", default=list(ExportConfig.formats), choices=EXPORT_FORMATS,
                        help=f"default {' '.join(ExportConfig.formats)}; aoti (an AOTInductor package for C++ stacks) "
                             "needs a C++ compiler and takes ~30 s even for a toy policy")
    parser.add_argument("--policy", default="lawr", choices=tuple(METHODS), help="which method's policy of the run")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="the run's dataset, for the observation range (default: the one summary.json names)")
    parser.add_argument("--signing_key", type=Path, default=os.environ.get(SIGNING_KEY_ENV),
                        help=f"sign the ONNX file with the key in this file (default: ${SIGNING_KEY_ENV})")
    args = parser.parse_args()
    signing_key = read_signing_key(args.signing_key) if args.signing_key else None
    export_policy(args.checkpoint, args.policy, tuple(args.formats), out=args.out, dataset=args.dataset,
                  signing_key=signing_key, log=print)


if __name__ == "__main__":
    run_main(main)
