#!/usr/bin/env python3
"""Reads a toy2d run directory with nothing but h5py/numpy and docs/SCHEMA.md, and
cross-checks it independently: success flags are recomputed from the stored
trajectories, the metrics group from the per-seed series, rates from the flags, and
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


def same(a, b):
    return np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True)


def main(run_dir):
    summary = json.load(open(f"{run_dir}/summary.json"))
    with h5py.File(f"{run_dir}/run.h5", "r") as f:
        attrs = dict(f.attrs)
        for key in ["schema_version", "noiselab_version", "git_describe", "experiment", "config",
                    "config_source", "created", "status", "seed", "device"]:
            if key not in attrs:
                fail(f"root attribute {key!r} missing")
        if attrs["schema_version"] != 1:
            fail(f"schema_version {attrs['schema_version']}")
        if attrs["status"] not in ("finished", "interrupted", "failed"):
            fail(f"status {attrs['status']!r}")
        if attrs["experiment"] != "toy2d" or summary["experiment"] != "toy2d":
            fail("experiment is not toy2d")
        if summary["status"] != attrs["status"]:
            fail("summary.json and run.h5 disagree on the status")
        config = tomllib.loads(attrs["config"])
        toy = config["toy2d"]
        seeds, iters, below = toy["seeds"], toy["iterations"], toy["success_below"]
        if sorted(f["dynamics"].keys()) != sorted(config["dynamics"]):
            fail(f"dynamics groups {list(f['dynamics'])} != config {config['dynamics']}")
        for key in config["dynamics"]:
            g = f["dynamics"][key]
            done = g.attrs["seeds"]
            rep = g["replicate"][()]
            if attrs["status"] == "finished" and (done != seeds or not np.array_equal(rep, np.arange(seeds))):
                fail(f"{key}: a finished run must hold every seed in order")
            if len(rep) != done or np.any(np.diff(rep) <= 0):
                fail(f"{key}: replicate indices not increasing or not {done} of them")
            traj = g["trajectories"][()]
            if traj.shape != (done, iters + 1, 2):
                fail(f"{key}: trajectories shape {traj.shape}")
            for name in ["tr_h_noise", "tr_h_sigma", "tr_h_sigma_iso", "loss"]:
                if g[name].shape != (done, iters):
                    fail(f"{key}: {name} shape {g[name].shape}")
            if not np.allclose(traj[:, 0, :], toy["start"]):
                fail(f"{key}: trajectories do not start at {toy['start']}")
            final = traj[:, -1, :]
            recomputed = np.all(np.nan_to_num(final, nan=np.inf) < below, axis=1)
            success = g["success"][()].astype(bool)
            if not np.array_equal(recomputed, success):
                fail(f"{key}: success flags disagree with the trajectories' end points")
            rate = success.mean() if done else 0.0
            if abs(g.attrs["success_rate"] - rate) > 1e-12 or g.attrs["successes"] != success.sum():
                fail(f"{key}: success attributes disagree with the flags")
            s = summary["dynamics"][key]
            if abs(s["success_rate"] - rate) > 1e-12 or s["seeds"] != done:
                fail(f"{key}: summary.json {s} disagrees with run.h5")
            # The metrics group: means over seeds of the per-seed series.
            m = g["metrics"]
            if not np.array_equal(m["iteration"][()], np.arange(iters)):
                fail(f"{key}: metrics/iteration is not 0..T-1")
            for name in ["loss", "tr_h_noise", "tr_h_sigma", "tr_h_sigma_iso"]:
                if m[name].maxshape != (None,) or m[name].chunks is None:
                    fail(f"{key}: metrics/{name} is not chunked and extendable")
                if done and not same(m[name][()], g[name][()].mean(axis=0)):
                    fail(f"{key}: metrics/{name} is not the mean of {name} over seeds")
            inside = np.all(np.nan_to_num(traj[:, 1:, :], nan=np.inf) < below, axis=2)
            if done and not same(m["escaped_fraction"][()], inside.mean(axis=0)):
                fail(f"{key}: metrics/escaped_fraction disagrees with the trajectories")
            if done and abs(m["escaped_fraction"][-1] - rate) > 1e-12:
                fail(f"{key}: the last escaped_fraction is not the success rate")
            for of in ["hessian", "noise"]:
                sp = g[f"spectra/{of}"]
                if not np.array_equal(sp["replicate"][()], rep) or np.any(sp["iteration"][()] != iters):
                    fail(f"{key}: spectra/{of} rows are not one per seed at iteration T")
                v = sp["values"][()]
                if v.shape != (done, 2) or np.any(np.diff(v, axis=1) > 1e-12 * np.abs(v).max()):
                    fail(f"{key}: spectra/{of}/values not descending pairs")
            if key == "gd" and np.any(g["tr_h_noise"][()] != 0):
                fail("gd: noise indicator must be zero")
            print(f"  {key:<12} {done} seeds, rate {rate:.3f}, Tr(H·Cov n)₀ mean {np.nanmean(g['tr_h_noise'][:, 0]) if done else float('nan'):.4g}")
    print(f"check_run: OK ({run_dir}: {len(config['dynamics'])} dynamics, status {attrs['status']})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
