#!/usr/bin/env python3
"""Reads a toy2d run directory with nothing but h5py/numpy and the layout documented in
README.md ("Reading the results"), and cross-checks it independently:
success flags are recomputed from the stored trajectories, rates from the flags, and
summary.json against run.h5. Exits non-zero with a message on the first mismatch.

usage: scripts/check_run.py RUN_DIR
"""
import json
import sys
try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

import h5py
import numpy as np


def fail(msg):
    print(f"check_run: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main(run_dir):
    summary = json.load(open(f"{run_dir}/summary.json"))
    with h5py.File(f"{run_dir}/run.h5", "r") as f:
        attrs = dict(f.attrs)
        for key in ["noiselab_version", "experiment", "config", "config_source", "created", "status", "seed"]:
            if key not in attrs:
                fail(f"root attribute {key!r} missing")
        if attrs["experiment"] != "toy2d" or summary["experiment"] != "toy2d":
            fail("experiment is not toy2d")
        config = tomllib.loads(attrs["config"])
        toy = config["toy2d"]
        seeds, iters, below = toy["seeds"], toy["iterations"], toy["success_below"]
        if sorted(f["dynamics"].keys()) != sorted(config["dynamics"]):
            fail(f"dynamics groups {list(f['dynamics'])} != config {config['dynamics']}")
        for key in config["dynamics"]:
            g = f["dynamics"][key]
            traj = g["trajectories"][()]
            if traj.shape != (seeds, iters + 1, 2):
                fail(f"{key}: trajectories shape {traj.shape}")
            for name in ["tr_h_noise", "tr_h_sigma", "loss"]:
                if g[name].shape != (seeds, iters):
                    fail(f"{key}: {name} shape {g[name].shape}")
            if not np.allclose(traj[:, 0, :], toy["start"]):
                fail(f"{key}: trajectories do not start at {toy['start']}")
            final = traj[:, -1, :]
            recomputed = np.all(np.nan_to_num(final, nan=np.inf) < below, axis=1)
            success = g["success"][()].astype(bool)
            if not np.array_equal(recomputed, success):
                fail(f"{key}: success flags disagree with the trajectories' end points")
            rate = success.mean()
            if abs(g.attrs["success_rate"] - rate) > 1e-12:
                fail(f"{key}: success_rate attribute {g.attrs['success_rate']} != {rate}")
            s = summary["dynamics"][key]
            if abs(s["success_rate"] - rate) > 1e-12 or s["seeds"] != seeds:
                fail(f"{key}: summary.json {s} disagrees with run.h5")
            if key == "gd" and np.any(g["tr_h_noise"][()] != 0):
                fail("gd: noise indicator must be zero")
            print(f"  {key:<12} rate {rate:.3f}  Tr(H·Cov n)₀ mean {np.nanmean(g['tr_h_noise'][:, 0]):.4g}")
    print(f"check_run: OK ({run_dir}: {len(config['dynamics'])} dynamics × {seeds} seeds)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
