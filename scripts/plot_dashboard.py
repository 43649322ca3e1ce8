#!/usr/bin/env python3
"""The dashboard's compare charts as PNG (matplotlib only), from the JSON the dashboard
writes on stdin when `p` is pressed; embedded in the noiselab binary.

Input: {"out_dir": str, "experiment": str, "x_marks": [[x, name]],
        "metrics": [{"key", "label", "log": bool,
                     "series": [{"label", "x": [...], "y": [...]}]}]}
Writes <out_dir>/dashboard-<key>.png, one per metric, every dynamics overlaid.
"""
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*"]


def main():
    spec = json.load(sys.stdin)
    out = Path(spec["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for m in spec["metrics"]:
        if not any(s["x"] for s in m["series"]):
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
        values = [v for s in m["series"] for v in s["y"] if v is not None and math.isfinite(v)]
        for i, s in enumerate(m["series"]):
            pts = [(x, y) for x, y in zip(s["x"], s["y"]) if y is not None and math.isfinite(y)]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=s["label"], marker=MARKERS[i % len(MARKERS)],
                    markevery=max(1, len(xs) // 8), markersize=4, linewidth=1.2)
        if m["log"] and values and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")
        for x, name in spec.get("x_marks", []):
            ax.axvline(x, color="gray", linestyle="--", linewidth=0.8)
            ax.text(x, 1.0, f" {name}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        ax.set_xlabel("iteration")
        ax.set_ylabel(m["label"])
        ax.set_title(f'{spec["experiment"]}: {m["label"]}')
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / f'dashboard-{m["key"]}.png')
        plt.close(fig)
        written += 1
    print(f"{written} PNG file(s) in {out}")


if __name__ == "__main__":
    main()
