#!/usr/bin/env python3
"""The paper's figures from noiselab run directories, and mean ± 95 % confidence bands
across seeds from sweep directories (h5py + matplotlib; scipy optional).

    pip install h5py matplotlib
    python3 scripts/plot_figures.py RUN_DIR [RUN_DIR ...] [-o OUT_DIR]
    python3 scripts/plot_figures.py SWEEP_DIR [-o OUT_DIR] [--include-collapsed]

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

Sweeps. A directory holding sweep.json (written by `noiselab sweep`) is a sweep: its
points' run.h5 files are grouped by their grid values (`settings`; points of one group
differ only by seed), and each group gives fig1b_success_rate (toy2d), fig2_tr_h_sigma
(one_hidden), fig4a–c (fashion_mnist) or fig7a–c (cifar10), in OUT_DIR (default:
SWEEP_DIR/figures/), each name suffixed by the group's grid values when the sweep has a
grid (fig4b_test_accuracy-eta0.05.png). Titles say "mean ± 95 % CI over n seeds", n the
group's runs. A point without run.h5, with an unreadable one, or with status other than
`finished` is skipped with a note on stderr.
- Curves (Figs. 2, 4, 7): per dynamics (and Fig. 2 per width, matched by the replicate's
  label) the mean across runs, line in the single-run style, and a translucent band
  mean ± t(0.975, n−1)·sd/√n (sd with n − 1; no band when n = 1). Series are aligned on
  iteration: only the iterations at which every included run has a finite value are
  drawn (how many others were left out goes to stderr), so n is the same along a curve.
  On Fig. 2's log axis a band reaching ≤ 0 is clipped at mean / 100.
- Fig. 1b: per run and dynamics the escape rate successes / finished toy seeds; a bar at
  the mean across runs, its 95 % t interval as an error bar, each run a dot. Toy seeds
  that diverged count as not escaped (as in the single-run figure); the legend counts them.
- Health: a dynamics whose run.h5 group carries the attribute `health` (collapsed or
  diverged; docs/SCHEMA.md) is left out of that dynamics' mean, and the legend says so,
  e.g. "SGD (1 of 3 excluded: collapsed)"; --include-collapsed lets such runs in (the
  legend then says "(1 of 3 collapsed, included)").
The t quantile is scipy.stats.t.ppf when scipy imports, else computed here (bisection on
the t CDF via the regularized incomplete beta function).
"""
import argparse
import json
import math
import re
import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
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


CLASSIFICATION_PANELS = [
    ("a_train_accuracy", "train_accuracy", "(a) training accuracy", "training accuracy"),
    ("b_test_accuracy", "test_accuracy", "(b) test accuracy", "test accuracy"),
    ("c_sharpness", "sharpness", "(c) expected sharpness, E[L(θ+ν)] − L(θ)", "expected sharpness"),
]


def classification(f, out, number):
    """Fig. 4 (FashionMNIST) or Fig. 7 (CIFAR-10): accuracies and sharpness along the GD
    phase and then every dynamics from θ_GD. Two panels sharing the y-axis, each with its
    own x-scale: a narrow one for the GD phase (0 … G, GD's curve) and a wide one for phase
    2 (G … G + T, every dynamics), θ_GD dashed at G in both. When the run holds no GD phase
    (gd_metrics_every = 0, or θ_GD read from a file) only the phase-2 panel."""
    keys = dynamics(f)

    def curves(metric):
        for key in keys:
            it, v = series(f, key, metric)
            if it is not None:
                yield key, it.astype(np.int64), v, None

    draw_classification(curves, keys, {k: label(f, k) for k in keys}, theta_gd_iteration(f, keys), number, out)


def draw_classification(curves, keys, labels, start, number, out, suffix="", note=""):
    """Figs. 4/7 (a)–(c) as classification() describes them. curves(metric) yields (key,
    iteration, values, band) per dynamics, band None or (low, high) drawn translucent
    around the line, iteration None for a dynamics named in the legend with no curve (all
    its runs excluded); labels: the legend text per key; suffix: added to each file name;
    note: a further title line."""
    data = {metric: list(curves(metric)) for _, metric, _, _ in CLASSIFICATION_PANELS}
    its = [it for rows in data.values() for _, it, _, _ in rows if it is not None and len(it)]
    gd_phase = any(int(it.min()) < start for it in its)
    end = max([int(it.max()) for it in its] + [start])
    for name, metric, title, ylabel in CLASSIFICATION_PANELS:
        if gd_phase:
            fig, (before, after) = plt.subplots(
                1, 2, sharey=True, figsize=(9, 4), gridspec_kw={"width_ratios": [1, 2.6]}
            )
            panels = [(before, 0, start), (after, start, end)]
        else:
            fig, after = plt.subplots(figsize=(7.5, 4))
            before = None
            panels = [(after, start, end)]
        for key, it, v, band in data[metric]:
            i = keys.index(key)
            if it is None:
                after.plot([], [], label=labels[key], **style(key, i))
                continue
            for ax, lo, hi in panels:
                keep = (it >= lo) & (it <= hi)
                # The GD-phase panel holds the curves of the GD phase (GD's), not the
                # other dynamics' first points at θ_GD on its edge.
                if keep.any() and (hi > start or (it < start).any()):
                    kw = style(key, i)
                    ax.plot(it[keep], v[keep], label=labels[key], **kw)
                    if band is not None:
                        ax.fill_between(it[keep], band[0][keep], band[1][keep], color=kw["color"], alpha=0.2, lw=0)
        for ax, lo, hi in panels:
            pad = max((hi - lo) * 0.03, 0.5)
            ax.set_xlim(lo - pad, hi + pad)
            ax.axvline(start, color="k", ls="--", lw=0.8)
            ax.grid(alpha=0.25)
        after.set_xlabel(f"iteration (θ_GD at {start}, dashed)")
        note_line = f"\n{note}" if note else ""
        if before is not None:
            before.set_xlabel("iteration")
            before.set_ylabel(ylabel)
            before.set_title(f"GD phase, 0 … {start}", fontsize=9)
            after.set_title(f"every dynamics from θ_GD, {start} … {end}", fontsize=9)
            fig.suptitle(f"Fig. {number}{title}{note_line}")
        else:
            after.set_ylabel(ylabel)
            after.set_title(
                f"Fig. {number}{title}{note_line}\nevery dynamics from θ_GD, {start} … {end}", fontsize=10
            )
        # Every dynamics once, in the drawing order (GD may have only one panel's points).
        entries = {}
        for ax, _, _ in panels:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                entries.setdefault(lab, h)
        order = {labels[k]: i for i, k in enumerate(keys)}
        labs = sorted(entries, key=lambda lab: order.get(lab, len(order)))
        legend_outside(after, [entries[lab] for lab in labs], labs)
        save(fig, out, f"fig{number}{name}{suffix}.png")


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


# ---------------------------------------------------------------------------------------
# Sweeps: mean ± 95 % confidence bands across seeds.


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _betacf(a, b, x):
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a, b, x):
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t, df):
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p, df):
    """Student's t quantile: scipy.stats.t.ppf when scipy is importable, else by bisection
    on the t CDF (from the regularized incomplete beta function), to ~1e-12."""
    try:
        from scipy.stats import t as student_t
    except ImportError:
        student_t = None
    if student_t is not None:
        return float(student_t.ppf(p, df))
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(hi, 1.0):
            break
    return 0.5 * (lo + hi)


def mean_ci(values):
    """values [n, m] (n seeds) → mean [m] and the 95 % t half-width [m] (None when n < 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = values.mean(axis=0)
    if n < 2:
        return mean, None
    return mean, t_quantile(0.975, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)


FLAGS = ("collapsed", "diverged")


def health(g):
    """A dynamics' health flag in run.h5 (the string attribute `health`), '' if healthy."""
    h = text(g.attrs.get("health", "")).strip()
    return "" if h in ("", "healthy") else h


def flag_note(flags, n_have, include):
    """The legend's words on flagged runs: '(1 of 3 excluded: collapsed)' and the like."""
    k = sum(flags.values())
    if not k:
        return ""
    what = ", ".join(f"{c} {h}" for h, c in sorted(flags.items())) if len(flags) > 1 else next(iter(flags))
    if include:
        if len(flags) == 1:
            return f" ({k} of {n_have} {what}, included)"
        return f" ({k} of {n_have} flagged, included: {what})"
    return f" ({k} of {n_have} excluded: {what})"


class Band:
    """One dynamics' metric over a group's runs: the iterations every included run measured
    (finite value), the mean, the 95 % band (None when n < 2), n included, n_have runs
    holding the series, and the health flags counted among those."""

    def __init__(self, rows, flags, n_have, dropped):
        self.flags, self.n_have, self.n, self.dropped = flags, n_have, len(rows), dropped
        self.it = self.mean = self.band = None
        if rows:
            common = sorted(set.intersection(*(set(r) for r in rows)))
            self.it = np.array(common, dtype=np.int64)
            values = np.array([[r[i] for i in common] for r in rows], dtype=float).reshape(len(rows), len(common))
            self.mean, half = mean_ci(values)
            if half is not None:
                self.band = (self.mean - half, self.mean + half)


def gather(runs, key, get, include, what):
    """The Band of dynamics `key` over runs (h5 files); get(group) → (iteration, values) or
    (None, None). Runs whose dynamics carries a health flag are left out unless include."""
    rows, flags, n_have = [], Counter(), 0
    for f in runs:
        if key not in f["dynamics"]:
            continue
        g = f["dynamics"][key]
        it, v = get(g)
        if it is None:
            continue
        n_have += 1
        h = health(g)
        if h:
            flags[h] += 1
            if not include:
                continue
        v = np.asarray(v, dtype=float)
        ok = np.isfinite(v)
        rows.append(dict(zip(np.asarray(it, dtype=np.int64)[ok].tolist(), v[ok].tolist())))
    dropped = 0
    if rows:
        union = set().union(*(set(r) for r in rows))
        dropped = len(union) - len(set.intersection(*(set(r) for r in rows)))
        if dropped:
            print(f"{what}: {dropped} iteration(s) not measured in every included run left out", file=sys.stderr)
    return Band(rows, flags, n_have, dropped)


def sweep_keys(runs):
    keys = {k for f in runs for k in f["dynamics"].keys()}
    return sorted(keys, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))


def sweep_label(runs, key):
    return next(label(f, key) for f in runs if key in f["dynamics"])


def group_note(n, settings):
    note = f"mean ± 95 % CI over {n} seed{'s' if n != 1 else ''}" + (" (n = 1: no band)" if n == 1 else "")
    if settings:
        note += " · " + ", ".join(f"{k} = {v}" for k, v in settings.items())
    return note


def toy2d_sweep(runs, out, suffix, note, include):
    """Fig. 1b over seeds: per run and dynamics the escape rate successes / finished toy
    seeds; bars the mean across runs, error bars its 95 % CI, dots the runs."""
    keys = sweep_keys(runs)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    toy_seeds, extra = [], []
    for x, key in enumerate(keys):
        rates, flags, n_have, diverged = [], Counter(), 0, 0
        for f in runs:
            if key not in f["dynamics"]:
                continue
            g = f["dynamics"][key]
            seeds = int(g.attrs.get("seeds", 0))
            if seeds == 0:
                continue
            n_have += 1
            h = health(g)
            if h:
                flags[h] += 1
                if not include:
                    continue
            toy_seeds.append(seeds)
            diverged += int(g.attrs.get("diverged", 0))
            rates.append(int(g.attrs.get("successes", 0)) / seeds)
        color = STYLE.get(key, {}).get("color", f"C{x % 10}")
        if rates:
            mean, half = mean_ci(np.array(rates)[:, None])
            ax.bar(x, mean[0], color=color, alpha=0.35, edgecolor=color, lw=1.2)
            if half is not None:
                ax.errorbar(x, mean[0], yerr=half[0], color="k", capsize=4, lw=1.2,
                            label="95 % CI (t)" if x == 0 else None)
            jitter = (np.arange(len(rates)) - (len(rates) - 1) / 2) * min(0.5 / max(len(rates), 1), 0.08)
            ax.plot(x + jitter, rates, "k.", ms=4, alpha=0.7, label="one run (seed)" if x == 0 else None)
        words = flag_note(flags, n_have, include)
        if words:
            extra.append(f"{sweep_label(runs, key)}{words}")
        if diverged:
            extra.append(f"{sweep_label(runs, key)}: {diverged} toy seeds diverged (count as not escaped)")
    for words in extra:
        ax.plot([], [], " ", label=words)
    ax.set_xticks(range(len(keys)), [sweep_label(runs, k) for k in keys], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("escape rate (successes / seeds)")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), max(1.0, ax.get_ylim()[1]))
    low, high = min(toy_seeds, default=0), max(toy_seeds, default=0)
    size = f"{low}" if low == high else f"{low}–{high}"
    ax.set_title(f"(b) escaping to the flat basin, {size} toy seeds per run\n{note}", fontsize=10)
    ax.grid(axis="y", alpha=0.25)
    handles, labels = ax.get_legend_handles_labels()
    mean_patch = matplotlib.patches.Patch(facecolor="0.75", edgecolor="0.4", label="mean over runs")
    legend_outside(ax, [mean_patch] + handles, ["mean over runs"] + labels)
    save(fig, out, f"fig1b_success_rate{suffix}.png")


def draw_band(ax, b, label_text, log=False, **kw):
    if b.it is None:
        ax.plot([], [], label=label_text, **kw)
        return
    ax.plot(b.it, b.mean, label=label_text, **kw)
    if b.band is not None:
        lo, hi = b.band
        if log:
            # A band reaching ≤ 0 cannot be drawn on a log axis: clipped at mean / 100.
            lo = np.where(lo > 0, lo, b.mean / 100)
        ax.fill_between(b.it, lo, hi, color=kw.get("color"), alpha=0.2, lw=0)


def one_hidden_sweep(runs, out, suffix, note, include):
    """Fig. 2 over seeds: per width (replicate, matched by its label) the mean Tr(HΣ)
    (solid) and isotropic Tr(HΣ̄) (dotted) with 95 % bands."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    extra = []
    for key in sweep_keys(runs):
        first = next(f for f in runs if key in f["dynamics"])
        if "replicates" not in first["dynamics"][key]:
            continue
        reps = first["dynamics"][key]["replicates"]
        flags_seen = None
        for i, r in enumerate(sorted(reps.keys(), key=int)):
            name = text(reps[r].attrs.get("label", r))

            def get(g, metric, r=r, name=name):
                if "replicates" not in g:
                    return None, None
                match = [q for q in g["replicates"] if text(g["replicates"][q].attrs.get("label", q)) == name]
                q = match[0] if match else (r if r in g["replicates"] else None)
                if q is None or metric not in g["replicates"][q]["metrics"]:
                    return None, None
                m = g["replicates"][q]["metrics"]
                return m["iteration"][()], m[metric][()]

            lines = (("tr_h_sigma", "-", r"Tr($H\Sigma$)"), ("tr_h_sigma_iso", ":", r"Tr($H\bar\Sigma$)"))
            for metric, ls, tex in lines:
                b = gather(runs, key, lambda g: get(g, metric), include, f"fig2 {key} {name} {metric}{suffix}")
                draw_band(ax, b, f"{name}: {tex}", log=True, color=f"C{i}", ls=ls)
                flags_seen = flags_seen or (b.flags, b.n_have)
        if flags_seen and sum(flags_seen[0].values()):
            extra.append(f"{sweep_label(runs, key)}{flag_note(*flags_seen, include)}")
    for words in extra:
        ax.plot([], [], " ", label=words)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title(r"Fig. 2: Tr($H\Sigma$) (solid) vs isotropic Tr($H\bar\Sigma$) (dotted)" + f"\n{note}", fontsize=10)
    ax.grid(alpha=0.25)
    legend_outside(ax)
    save(fig, out, f"fig2_tr_h_sigma{suffix}.png")


def classification_sweep(runs, out, suffix, note, include, number):
    """Figs. 4/7 (a)–(c) over seeds: per dynamics the mean curve and its 95 % band, laid
    out as classification() lays out one run."""
    keys = sweep_keys(runs)
    starts = sorted({theta_gd_iteration(f, dynamics(f)) for f in runs})
    if len(starts) > 1:
        print(f"fig{number}{suffix}: θ_GD differs between seeds {starts}; the dashed line marks {starts[0]}",
              file=sys.stderr)
    bands = {}
    for _, metric, _, _ in CLASSIFICATION_PANELS:
        for key in keys:
            bands[metric, key] = gather(runs, key, lambda g: series_of(g, metric), include,
                                        f"fig{number} {key} {metric}{suffix}")
    labels = {}
    for key in keys:
        # One legend text per dynamics for all three panels, from its first metric present
        # (a flag belongs to the dynamics, so every metric counts the same runs).
        b = next((bands[m, key] for _, m, _, _ in CLASSIFICATION_PANELS if bands[m, key].n_have), None)
        labels[key] = sweep_label(runs, key) + (flag_note(b.flags, b.n_have, include) if b else "")

    def curves(metric):
        for key in keys:
            b = bands[metric, key]
            if b.n_have:
                yield key, b.it, b.mean, b.band

    draw_classification(curves, keys, labels, starts[0], number, out, suffix, note)


def series_of(g, metric):
    m = metrics(g)
    if metric not in m:
        return None, None
    return m["iteration"][()], m[metric][()]


def group_suffix(settings, grid_keys):
    """A file-name suffix per grid point: '-eta0.05' (the key's last component, then its
    value; the whole key where last components repeat)."""
    if not settings:
        return ""
    keys = [k for k in grid_keys if k in settings] + [k for k in settings if k not in grid_keys]
    short = [k.rsplit(".", 1)[-1] for k in keys]
    if len(set(short)) < len(short):
        short = keys
    return "".join(f"-{s}{re.sub(r'[^A-Za-z0-9._+-]+', '_', str(settings[k]))}" for s, k in zip(short, keys))


SWEEP_PLOTS = {
    "toy2d": toy2d_sweep,
    "one_hidden": one_hidden_sweep,
    "fashion_mnist": lambda *a: classification_sweep(*a, number=4),
    "cifar10": lambda *a: classification_sweep(*a, number=7),
}


def plot_sweep(sweep, out, include):
    """Every group of a sweep (points with equal settings) through its experiment's sweep
    figure; 0 when something was drawn."""
    meta = json.loads((sweep / "sweep.json").read_text())
    grid_keys = [g.get("key") for g in meta.get("grid", [])]
    groups = {}
    with ExitStack() as stack:
        for p in meta.get("points", []):
            path = sweep / p["dir"] / "run.h5"
            where = sweep / p["dir"]
            if not path.is_file():
                print(f"{where}: no run.h5 (unfinished point?), skipped", file=sys.stderr)
                continue
            try:
                f = stack.enter_context(h5py.File(path, "r"))
            except OSError as e:
                print(f"{where}: run.h5 unreadable ({e}), skipped", file=sys.stderr)
                continue
            status = text(f.attrs.get("status", ""))
            if status != "finished":
                print(f"{where}: status {status!r}, not finished, skipped", file=sys.stderr)
                continue
            settings = {k: text(v) for k, v in (p.get("settings") or {}).items()}
            groups.setdefault(json.dumps(settings, sort_keys=True), (settings, []))[1].append(f)
        if not groups:
            print(f"{sweep}: no finished point with a run.h5", file=sys.stderr)
            return 1
        status = 0
        for settings, runs in groups.values():
            experiment = text(runs[0].attrs["experiment"])
            if meta.get("experiment") not in (None, experiment):
                print(f"{sweep}: sweep.json says {meta['experiment']!r}, run.h5 {experiment!r}; drawing {experiment!r}",
                      file=sys.stderr)
            plot = SWEEP_PLOTS.get(experiment)
            if plot is None:
                print(f"{sweep}: no sweep figures for experiment {experiment!r}", file=sys.stderr)
                status = 1
                continue
            plot(runs, out, group_suffix(settings, grid_keys), group_note(len(runs), settings), include)
        return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories, or sweep directories (with sweep.json)")
    ap.add_argument("-o", "--out", type=Path, help="where the PNG files go (default: <run or sweep>/figures/)")
    ap.add_argument("--include-collapsed", action="store_true",
                    help="sweeps: let runs whose dynamics is flagged collapsed or diverged into the means")
    args = ap.parse_args()
    status = 0
    for run in args.runs:
        if (run / "sweep.json").is_file():
            status = plot_sweep(run, args.out or run / "figures", args.include_collapsed) or status
            continue
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
