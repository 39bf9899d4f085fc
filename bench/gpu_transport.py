"""Carry a trained run back from the GPU host in the device tool's result files, and rebuild it here.

    python bench/gpu_transport.py RESULTS_DIR RUN_DIR     # join the parts; then: scripts/evaluate.py --checkpoint RUN_DIR

The device tool returns at most 8 files of at most 16 MiB each. A run at ``profile=gpu`` sizes is bigger
(flow/final.pt 29 MiB, critic/final.pt 63 MiB; planner/final.pt holds the latent planner alone, the flow it
acts through being flow/final.pt's), so ``pack`` writes the run's products as one gzipped tar split into parts
``run.tar.gz.000``, ``.001``, ... Members go in order of need (evaluation needs config.json, the flow and the
planner, not the critic): what does not fit is left out and listed in the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

# in order of need: evaluation needs config/summary, flow and planner; the critic only to retrain phase 3 or
# train baselines here, so it is left out (and listed) when the archive does not fit otherwise
MEMBERS = ("config.json", "summary.json", "flow/final.pt", "planner/final.pt", "critic/final.pt")
OPTIONAL = ("critic/final.pt",)
PART_PREFIX = "run.tar.gz."
PART_BYTES = 16 * 2**20 - 2**16   # the device tool returns files of at most 16 MiB


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(run_dir: str | Path, out_dir: str | Path, max_parts: int = 7, part_bytes: int = PART_BYTES) -> dict:
    """Split the products of ``run_dir`` into at most ``max_parts`` files in ``out_dir``; returns the manifest."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        sources = {m: run_dir / m for m in MEMBERS if (run_dir / m).is_file()}
        members, left_out = list(sources), []
        archive = Path(tmp) / "run.tar.gz"
        while True:  # drop the least needed member until the archive fits
            with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
                for name in members:
                    tar.add(sources[name], arcname=name)
            if archive.stat().st_size <= max_parts * part_bytes or members[-1] not in OPTIONAL:
                break
            left_out.insert(0, members.pop())
        if archive.stat().st_size > max_parts * part_bytes:
            raise ValueError(f"gpu_transport: even {members} need {archive.stat().st_size / 2**20:.1f} MiB, more "
                             f"than {max_parts} parts of {part_bytes / 2**20:.2f} MiB")
        for stale in out_dir.glob(f"{PART_PREFIX}*"):  # of an earlier pack into the same folder
            stale.unlink()
        parts = []
        with archive.open("rb") as f:
            for index, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
                part = out_dir / f"{PART_PREFIX}{index:03d}"
                part.write_bytes(block)
                parts.append({"name": part.name, "bytes": len(block), "sha256": _sha256(part)})
    sizes = {m: (run_dir / m).stat().st_size for m in members}
    return {"parts": parts, "members": members, "member_bytes": sizes, "left_out": left_out}


def unpack(results_dir: str | Path, run_dir: str | Path) -> list[str]:
    """Join the parts in ``results_dir`` into the run directory ``run_dir``; returns the files written."""
    results_dir, run_dir = Path(results_dir), Path(run_dir)
    if (run_dir / "flow" / "final.pt").exists():
        raise FileExistsError(f"{run_dir} already holds a run; unpack into a new directory")
    parts = sorted(results_dir.glob(f"{PART_PREFIX}[0-9][0-9][0-9]"))
    if not parts:
        raise FileNotFoundError(f"no {PART_PREFIX}NNN parts in {results_dir}")
    report = results_dir / "gpu_check.json"
    if report.is_file():  # the manifest pack wrote: every part present and intact
        expected = json.loads(report.read_text()).get("transport", {}).get("parts", [])
        if [p["name"] for p in expected] != [p.name for p in parts]:
            raise ValueError(f"parts {[p.name for p in parts]} != {[p['name'] for p in expected]} of {report}")
        for part, want in zip(parts, expected):
            if _sha256(part) != want["sha256"]:
                raise ValueError(f"{part}: sha256 differs from {report}; the file is damaged")
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "run.tar.gz"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out)
        with tarfile.open(archive, "r:gz") as tar:
            names = tar.getnames()
            tar.extractall(run_dir, filter="data")
    if report.is_file():
        shutil.copy(report, run_dir / "gpu_check.json")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", help="the files the device tool returned (run.tar.gz.NNN, gpu_check.json)")
    parser.add_argument("run_dir", help="new run directory to write (flow/, planner/, critic/ final.pt ...)")
    args = parser.parse_args()
    try:
        names = unpack(args.results_dir, args.run_dir)
    except (OSError, ValueError) as err:
        sys.exit(f"[gpu_transport] {err}")
    print(f"[gpu_transport] wrote {', '.join(names)} into {args.run_dir}")


if __name__ == "__main__":
    main()
