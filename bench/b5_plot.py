"""``b5_latency_cdf.png``: the latency distribution of each B5 case, one curve each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot(latencies: Mapping[str, Sequence[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(8, 5))
    for label, values in latencies.items():
        data = sorted(v for v in values if v > 0)
        if data:
            ax.plot(data, [(i + 1) / len(data) for i in range(len(data))], label=label)
    ax.axhline(0.99, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set(title="B5: reads at scale (and RSVP POSTs)", xlabel="ms", ylabel="fraction")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
