"""Ours against the peers, back to back on the same input and machine: both figures and the ratio.

    .venv/bin/python bench/compare.py                        # every row, 3 runs each
    .venv/bin/python bench/compare.py train_step --runs 5    # one row

Rows (the peers are in bench/peers/; their dependencies are optional):
    preprocess       `keras-googlenet preprocess` (all cores) vs the seed's serial OpenCV loop,
                     on 3,000 Caltech-shaped JPEGs (bench/preprocess.py --shape caltech), or
                     on your own class folders with `--input DIR` (real photos, e.g. Caltech-101)
    pipeline         the tf.data training input (random crop 224 + flip, batch 128) vs a torch
                     DataLoader (2 workers, OpenCV decode + albumentations), 256 px JPEGs,
                     each decoding every image (our first epoch, or data.cache: false)
    pipeline_cached  the same, ours after the first epoch with decoded images cached in memory
                     (what data.cache: auto does when they fit), vs the same DataLoader
    train_step       `model.fit` step, 224 px, batch 32, batch norm + aux heads, float32, vs
                     torchvision's googlenet(aux_logits=True) with SGD
    train_step_bf16  the same under mixed_bfloat16 vs torch.autocast(bfloat16)

`--isa avx2` caps both sides' CPU kernels at AVX2 (oneDNN's ONEDNN_MAX_CPU_ISA, torch's
ATEN_CPU_CAPABILITY, MKL's MKL_ENABLE_INSTRUCTIONS): an emulation of an AVX2-only CPU on an
AVX-512 one, for the kernels that dispatch at run time (TensorFlow's Eigen code is compiled for
AVX either way).

Each run measures ours, then the peer, each in a fresh process, so neither inherits the other's
threads or memory. A peer that is not installed is reported as such and ours still printed.
The summary gives the median ratio and its spread over the runs. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

ROWS = ("preprocess", "pipeline", "pipeline_cached", "train_step", "train_step_bf16")
PEER = {
    "preprocess": "seed_preprocess",
    "pipeline": "torch_loader",
    "pipeline_cached": "torch_loader",
    "train_step": "torchvision_step",
    "train_step_bf16": "torchvision_step",
}

# Environment variables that cap the run-time dispatched kernels at one instruction set.
ISA_CAPS = {
    "avx2": {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    }
}


def one(row: str, side: str, args) -> dict:
    """Measures one side of one row in this process (called in a fresh one)."""
    sys.path.insert(0, str(BENCH))
    if row == "preprocess":
        import preprocess

        folder = Path(args.input) if args.input else preprocess.generate(args.images, "caltech")
        if side == "ours":
            r = preprocess.measure_one(str(folder), preprocess.default_workers(), 256)
            return {"images_per_second": r["images"] / r["seconds"]}
        from peers import seed_preprocess

        with tempfile.TemporaryDirectory(dir=preprocess.CACHE) as out:
            r = seed_preprocess.run(folder, Path(out), 256)
        return {"images_per_second": r["images"] / r["seconds"]}
    if row in ("pipeline", "pipeline_cached"):
        import pipeline

        root = pipeline.make_dataset(pipeline.CACHE / f"pipeline_{args.images}", args.images)
        if side == "ours":
            variant = "crop_flip" if row == "pipeline" else "cached_crop_flip"
            rate, _ = pipeline.measure(variant, root, args.batches, 5, 128)
            return {"images_per_second": rate}
        from peers import torch_loader

        return torch_loader.measure(root, args.batches, 5, 128)
    bf16 = row == "train_step_bf16"
    if side == "ours":
        import train_step

        policy = "mixed_bfloat16" if bf16 else "float32"
        return train_step.measure(224, policy, 32, args.steps, 2, args.set)
    from peers import torchvision_step

    return torchvision_step.measure(224, bf16, 32, args.steps, 2)


def run_side(row: str, side: str, args) -> float | None:
    """The images/s of one side, from a fresh process; None if it failed."""
    cmd = [sys.executable, __file__, "--one", row, side, "--images", str(args.images)]
    cmd += ["--steps", str(args.steps), "--batches", str(args.batches)]
    cmd += [f"--set={kv}" for kv in args.set]
    cmd += ["--input", args.input] if args.input else []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **ISA_CAPS.get(args.isa, {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode or "RESULT " not in proc.stdout:
        print(f"  {row} {side} failed: {proc.stderr.strip()[-400:]}", flush=True)
        return None
    return json.loads(proc.stdout.split("RESULT ", 1)[1])["images_per_second"]


def spread(values: list[float], fmt: str) -> str:
    """`median (min-max)` of `values`, or "-" when there are none."""
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rows", nargs="*", default=list(ROWS), help=" ".join(ROWS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=3000, help="JPEGs in the generated sets")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps")
    parser.add_argument("--batches", type=int, default=30, help="timed pipeline batches")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--input", metavar="DIR", help="preprocess row: your own class folders, not generated ones"
    )
    parser.add_argument(
        "--isa", choices=["default", *ISA_CAPS], default="default", help="cap the CPU kernels"
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if unknown := [r for r in args.rows if r not in ROWS]:
        parser.error(f"unknown row(s) {unknown}; rows: {', '.join(ROWS)}")
    if args.input and not Path(args.input).is_dir():
        parser.error(f"--input {args.input}: not a folder")
    if args.one:
        print("RESULT " + json.dumps(one(*args.one, args)), flush=True)
        return 0

    from peers import missing

    cpuinfo = Path("/proc/cpuinfo").read_text()
    cpu = next(ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln)
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in cpuinfo]
    print(f"{cpu}, {len(os.sched_getaffinity(0))} cores, bf16 flags: {bf16 or 'none'}")
    isa = "the CPU's own"
    if args.isa != "default":
        isa = f"{args.isa}, emulated: {ISA_CAPS[args.isa]}"
    print(f"kernels' instruction set: {isa}")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.runs} runs per row\n")
    summary = []
    for row in args.rows:
        absent = missing(PEER[row])
        ratios, ours_all, peer_all = [], [], []
        for run in range(1, args.runs + 1):
            ours = run_side(row, "ours", args)
            peer = None if absent else run_side(row, "peer", args)
            line = f"{row:<16} run {run}: ours {ours or float('nan'):8.1f}"
            if absent:
                line += f"   peer not installed ({', '.join(absent)})"
            elif ours and peer:
                ratios.append(ours / peer)
                line += f"   peer {peer:8.1f}   ratio {ours / peer:5.2f}x"
            print(line + "  images/s", flush=True)
            ours_all += [ours] if ours else []
            peer_all += [peer] if peer else []
        summary.append((row, ours_all, peer_all, ratios))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print(f"{'row':<16} {'ours images/s':>17} {'peer images/s':>17} {'ratio median (min-max)':>24}")
    for row, ours, peer, ratios in summary:
        ours, peer, ratios = spread(ours, ".1f"), spread(peer, ".1f"), spread(ratios, ".2f")
        print(f"{row:<16} {ours:>17} {peer:>17} {ratios:>24}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
