"""Plots tally-bench's latency distributions (latency.csv) as one PNG.

Usage: python plot_latency.py latency.csv latency.png
Each HTTP run is a line: latency (log scale) against percentile, so tails are visible.
"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source: str, target: str) -> None:
    runs = defaultdict(list)
    with open(source, newline="") as f:
        for row in csv.DictReader(f):
            runs[row["run"]].append((float(row["percentile"]), float(row["latency_ms"])))
    fig, ax = plt.subplots(figsize=(10, 6))
    for label, points in runs.items():
        points.sort()
        ax.plot([p for p, _ in points], [ms for _, ms in points], marker=".", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("tally-bench: request latency distributions")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(target, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
