#!/usr/bin/env python3
"""The paper's figures from noiselab run directories (h5py + matplotlib only).

    pip install h5py matplotlib
    python3 scripts/plot_figures.py RUN_DIR [RUN_DIR ...] [-o OUT_DIR]

Each run directory's run.h5 (layout: docs/SCHEMA.md) gives, by its experiment:
- toy2d:         fig1a_trajectories.png, fig1b_success_rate.png, fig1c_tr_h_noise.png
- one_hidden:    fig2_tr_h_sigma.png
- fashion_mnist: fig3a_hessian_spectrum.png (when the run recorded it), fig3b_projection.png,
                 fig3c_tr_h_sigma.png, fig4a_train_accuracy.png, fig4b_test_accuracy.png,
                 fig4c_sharpness.png, fig5_gradient_and_noise_norm.png
- cifar10:       fig7a_train_accuracy.png, fig7b_test_accuracy.png, fig7c_sharpness.png
PNG files go to OUT_DIR (default: each run's directory, subfolder figures/).

Figs. 4 and 7 draw the GD phase (0 … θ_GD) and phase 2 (every dynamics from θ_GD) as two
panels sharing the y-axis, each with its own x-scale (only phase 2 when the run recorded
no GD phase). Legends sit outside the axes; each dynamics keeps one colour, marker and
dash pattern in every figure, so curves that coincide stay distinguishable.
"""
import argparse
import re
import sys
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ORDER = ["gd", "gld_const", "gld_dynamic", "gld_diag", "gld_leading", "gld_hessian", "gld_eig1", "sgd"]


def dynamics(f):
    keys = list(f["dynamics"].keys())
    return sorted(keys, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))


def label(f, key):
    return f["dynamics"][key].attrs.get("label", key)


def metrics(group):
    """The metrics/ group of a dynamics (its first replicate when it has several)."""
    if "metrics" in group:
        return group["metrics"]
    return group["replicates"]["0"]["metrics"]


# One look per dynamics in every figure: colour, marker and dash pattern, so that curves
# which coincide (the trapped dynamics in Fig. 4, GLD const and GLD diag in Fig. 1c) stay
# distinguishable. Open markers let a marker underneath show through.
STYLE = {
    "gd": dict(color="C0", marker="o", ls="-"),
    "gld_const": dict(color="C1", marker="s", ls=(0, (6, 2))),
    "gld_dynamic": dict(color="C2", marker="^", ls="-."),
    "gld_diag": dict(color="C3", marker="v", ls=(0, (2, 2))),
    "gld_leading": dict(color="C4", marker="D", ls="-"),
    "gld_hessian": dict(color="C5", marker="P", ls=(0, (6, 2))),
    "gld_eig1": dict(color="C6", marker="X", ls="-."),
    "sgd": dict(color="C7", marker="*", ls="-"),
}


def style(key, index):
    """Plot keywords of a dynamics; index (its place in the figure's drawing order) makes
    the lines drawn first a little wider, so a later line on top of one leaves it visible."""
    s = dict(STYLE.get(key, dict(color=f"C{index % 10}", marker="o", ls="-")))
    s.update(lw=max(2.0 - 0.15 * index, 0.9), mfc="none", ms=5)
    return s


def legend_outside(ax, handles=None, labels=None, **kw):
    """The legend to the right of the axes, where it covers no data."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    kw.setdefault("fontsize", 7)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kw)


def save(fig, out, name):
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(path)


def toy2d(f, out):
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for i, key in enumerate(dynamics(f)):
        g = f["dynamics"][key]
        if "trajectories" in g and len(g["trajectories"]):
            path = g["trajectories"][0]
            color = STYLE.get(key, {}).get("color", f"C{i % 10}")
            ax.plot(path[:, 0], path[:, 1], lw=1, color=color, label=label(f, key))
    # The minima as markers named in the legend (text beside them would cover paths).
    ax.plot([1], [1], "k^", ms=9, mfc="white", mew=1.5, ls="none", zorder=5, label="sharp minimum (1, 1)")
    ax.plot([-1], [-1], "kv", ms=9, mfc="white", mew=1.5, ls="none", zorder=5, label="flat minimum (−1, −1)")
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")
    ax.set_title("(a) one run of each dynamics")
    legend_outside(ax, markerscale=0.7, labelspacing=0.8)
    save(fig, out, "fig1a_trajectories.png")

    keys = dynamics(f)
    rates = [f["dynamics"][k].attrs.get("success_rate", np.nan) for k in keys]
    seeds = [f["dynamics"][k].attrs.get("seeds", 0) for k in keys]
    err = [np.sqrt(r * (1 - r) / max(n, 1)) for r, n in zip(rates, seeds)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(keys)), rates, yerr=err, capsize=3)
    ax.set_xticks(range(len(keys)), [label(f, k) for k in keys], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("success rate")
    ax.set_title(f"(b) escaping to the flat basin, {max(seeds)} runs")
    save(fig, out, "fig1b_success_rate.png")

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for i, key in enumerate(keys):
        g = f["dynamics"][key]
        if "tr_h_noise" in g and len(g["tr_h_noise"]):
            v = g["tr_h_noise"][0]
            # Markers at staggered iterations: curves that coincide (GLD const and GLD
            # diag) still show each its own marks, besides each its own dash pattern.
            every = max(len(v) // 10, 1)
            ax.plot(v, markevery=(i * every // max(len(keys), 1), every), label=label(f, key), **style(key, i))
    ax.set_xlabel("iteration")
    ax.set_ylabel("Tr(H_t Cov n_t)")
    ax.set_title("(c) Tr(H·Cov n) of each dynamics' noise, one run")
    legend_outside(ax)
    save(fig, out, "fig1c_tr_h_noise.png")


def one_hidden(f, out):
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in dynamics(f):
        reps = f["dynamics"][key]["replicates"]
        for i, r in enumerate(sorted(reps.keys(), key=int)):
            m = reps[r]["metrics"]
            color = f"C{i}"
            name = reps[r].attrs.get("label", r)
            ax.plot(m["iteration"][()], m["tr_h_sigma"][()], color=color, label=f"{name}: " + r"Tr($H\Sigma$)")
            ax.plot(m["iteration"][()], m["tr_h_sigma_iso"][()], color=color, ls=":", label=f"{name}: " + r"Tr($H\bar\Sigma$)")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title(r"Fig. 2: Tr($H\Sigma$) (solid) vs isotropic Tr($H\bar\Sigma$) (dotted)")
    ax.legend(fontsize=7)
    save(fig, out, "fig2_tr_h_sigma.png")


def series(f, key, metric):
    m = metrics(f["dynamics"][key])
    if metric not in m:
        return None, None
    return m["iteration"][()], m[metric][()]


def theta_gd_iteration(f, keys):
    """Where phase 2 starts: gd_iterations of the run's resolved config (θ_GD is iteration
    G), else the first measurement of the dynamics other than GD (GD's curve also holds
    the GD phase before it), else GD's spectrum at θ_GD."""
    config = f.attrs.get("config", "")
    if isinstance(config, bytes):
        config = config.decode()
    found = re.search(r"^\s*gd_iterations\s*=\s*(\d+)\s*(#.*)?$", str(config), re.M)
    if found:
        return int(found.group(1))
    starts = [series(f, k, "test_accuracy")[0] for k in keys if k != "gd"]
    starts = [int(it[0]) for it in starts if it is not None and len(it)]
    if starts:
        return min(starts)
    g = f["dynamics"].get("gd")
    if g is not None and "spectra" in g and "hessian" in g["spectra"]:
        return int(g["spectra"]["hessian"]["iteration"][0])
    return 0


def classification(f, out, number):
    """Fig. 4 (FashionMNIST) or Fig. 7 (CIFAR-10): accuracies and sharpness along the GD
    phase and then every dynamics from θ_GD. Two panels sharing the y-axis, each with its
    own x-scale: a narrow one for the GD phase (0 … G, GD's curve) and a wide one for phase
    2 (G … G + T, every dynamics), θ_GD dashed at G in both. When the run holds no GD phase
    (gd_metrics_every = 0, or θ_GD read from a file) only the phase-2 panel."""
    keys = dynamics(f)
    start = theta_gd_iteration(f, keys)
    its = [series(f, k, m)[0] for k in keys for m in ("train_accuracy", "test_accuracy", "sharpness")]
    its = [it.astype(np.int64) for it in its if it is not None and len(it)]
    gd_phase = any(int(it.min()) < start for it in its)
    end = max([int(it.max()) for it in its] + [start])
    for name, metric, title, ylabel in [
        ("a_train_accuracy.png", "train_accuracy", "(a) training accuracy", "training accuracy"),
        ("b_test_accuracy.png", "test_accuracy", "(b) test accuracy", "test accuracy"),
        ("c_sharpness.png", "sharpness", "(c) expected sharpness, E[L(θ+ν)] − L(θ)", "expected sharpness"),
    ]:
        if gd_phase:
            fig, (before, after) = plt.subplots(
                1, 2, sharey=True, figsize=(9, 4), gridspec_kw={"width_ratios": [1, 2.6]}
            )
            panels = [(before, 0, start), (after, start, end)]
        else:
            fig, after = plt.subplots(figsize=(7.5, 4))
            before = None
            panels = [(after, start, end)]
        for i, key in enumerate(keys):
            it, v = series(f, key, metric)
            if it is None:
                continue
            it = it.astype(np.int64)
            for ax, lo, hi in panels:
                keep = (it >= lo) & (it <= hi)
                # The GD-phase panel holds the curves of the GD phase (GD's), not the
                # other dynamics' first points at θ_GD on its edge.
                if keep.any() and (hi > start or (it < start).any()):
                    ax.plot(it[keep], v[keep], label=label(f, key), **style(key, i))
        for ax, lo, hi in panels:
            pad = max((hi - lo) * 0.03, 0.5)
            ax.set_xlim(lo - pad, hi + pad)
            ax.axvline(start, color="k", ls="--", lw=0.8)
            ax.grid(alpha=0.25)
        after.set_xlabel(f"iteration (θ_GD at {start}, dashed)")
        if before is not None:
            before.set_xlabel("iteration")
            before.set_ylabel(ylabel)
            before.set_title(f"GD phase, 0 … {start}", fontsize=9)
            after.set_title(f"every dynamics from θ_GD, {start} … {end}", fontsize=9)
            fig.suptitle(f"Fig. {number}{title}")
        else:
            after.set_ylabel(ylabel)
            after.set_title(f"Fig. {number}{title}\nevery dynamics from θ_GD, {start} … {end}", fontsize=10)
        # Every dynamics once, in the drawing order (GD may have only one panel's points).
        entries = {}
        for ax, _, _ in panels:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                entries.setdefault(lab, h)
        order = {label(f, k): i for i, k in enumerate(keys)}
        labs = sorted(entries, key=lambda lab: order.get(lab, len(order)))
        legend_outside(after, [entries[lab] for lab in labs], labs)
        save(fig, out, f"fig{number}{name}")


def fashion_mnist(f, out):
    classification(f, out, 4)
    keys = dynamics(f)
    if "sgd" in keys and series(f, "sgd", "projection_coefficient")[0] is not None:
        it, a_hat = series(f, "sgd", "projection_coefficient")
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(it, a_hat, marker=".")
        ax.set_xlabel("iteration")
        ax.set_ylabel("â")
        ax.set_title("Fig. 3(b): projection coefficient along SGD")
        save(fig, out, "fig3b_projection.png")

        it, th = series(f, "sgd", "tr_h_sigma")
        _, iso = series(f, "sgd", "tr_h_sigma_iso")
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(it, th, marker=".", label=r"Tr($H_t\Sigma_t$)")
        ax.plot(it, iso, marker=".", ls=":", label=r"Tr($H_t\bar\Sigma_t$), isotropic")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title("Fig. 3(c): SGD noise vs isotropic noise of equal trace")
        legend_outside(ax, fontsize=9)
        save(fig, out, "fig3c_tr_h_sigma.png")

        it, g = series(f, "sgd", "gradient_norm")
        _, n = series(f, "sgd", "noise_norm")
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(it, g, marker=".", label="‖∇L(θ_t)‖")
        ax.plot(it, n, marker=".", label="noise norm √Tr C_m")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title("Fig. 5: gradient mean vs noise, SGD")
        legend_outside(ax, fontsize=9)
        save(fig, out, "fig5_gradient_and_noise_norm.png")

    spectra = [k for k in keys if "spectra" in f["dynamics"][k] and "hessian" in f["dynamics"][k]["spectra"]]
    if spectra:
        values = f["dynamics"][spectra[0]]["spectra"]["hessian"]["values"][0]
        values = values[np.isfinite(values)]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(np.arange(1, len(values) + 1), values, ".")
        ax.set_xlabel("order of eigenvalues")
        ax.set_ylabel("eigenvalue")
        ax.set_title(f"Fig. 3(a): top {len(values)} Hessian eigenvalues at θ_GD")
        save(fig, out, "fig3a_hessian_spectrum.png")
    else:
        print("fig3a: this run recorded no Hessian spectrum at θ_GD", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args()
    status = 0
    for run in args.runs:
        path = run / "run.h5"
        if not path.is_file():
            print(f"{path}: no run.h5 (still running? `noiselab repair {run}` writes it)", file=sys.stderr)
            status = 1
            continue
        with h5py.File(path, "r") as f:
            experiment = f.attrs["experiment"]
            out = args.out or run / "figures"
            plot = {
                "toy2d": toy2d,
                "one_hidden": one_hidden,
                "fashion_mnist": fashion_mnist,
                "cifar10": lambda f, out: classification(f, out, 7),
            }.get(experiment)
            if plot is None:
                print(f"{path}: no figures for experiment {experiment!r}", file=sys.stderr)
                status = 1
                continue
            plot(f, out)
    sys.exit(status)


if __name__ == "__main__":
    main()
