"""Benchmark output a person reads: a terminal table and a latency chart."""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path, write_json_atomic, write_text_atomic


def table(rows: list[dict]) -> str:
    """ceiling: share of a library matrix product's rate; peak: share of the micro-kernel peak of the row's precision;
    agree: labels equal to the FP32 row's over held-out scenes at that size."""

    def pct(value: float | None, digits: int = 0) -> str:
        return f"{100 * value:.{digits}f}%" if value is not None else "n/a"

    header = (f"{'backend':<20}{'size':>10}{'median':>9}{'p90':>9}{'p99':>9}{'fps':>7}{'GFLOP/s':>9}{'ceiling':>9}"
              f"{'peak':>7}{'agree':>9}{'mem MB':>8}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for r in rows:
        memory = f"{r['memory_mb']:.0f}" if r["memory_mb"] is not None else "n/a"
        lines.append(
            f"{r['backend']:<20}{r['size']:>10}{r['median_ms']:>7.1f}ms{r['p90_ms']:>7.1f}ms{r['p99_ms']:>7.1f}ms"
            f"{r['throughput_per_s']:>7.1f}{r['achieved_gflop_s']:>9.1f}{pct(r['ceiling_share']):>9}"
            f"{pct(r.get('peak_share')):>7}{pct(r.get('agreement_vs_fp32'), 2):>9}{memory:>8}"
        )
    return "\n".join(lines)


def chart(rows: list[dict], path: Path, title: str) -> None:
    """Grouped horizontal bars: median latency per backend, one group per input size."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    sizes = list(dict.fromkeys(r["size"] for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    figure, axis = plt.subplots(figsize=(8, 1.0 + 0.9 * len(sizes) * len(backends) / 2))
    height = 0.8 / len(backends)
    for index, backend in enumerate(backends):
        values = {r["size"]: r["median_ms"] for r in rows if r["backend"] == backend}
        positions = [s + index * height for s in range(len(sizes))]
        bars = axis.barh(positions, [values.get(s, 0) for s in sizes], height, label=backend)
        axis.bar_label(bars, fmt="%.0f ms", fontsize=7, padding=2)
    axis.set_yticks([s + 0.4 - height / 2 for s in range(len(sizes))], sizes)
    axis.invert_yaxis()
    axis.set_xlabel("median latency per frame (ms), lower is better")
    axis.set_title(title)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def save(out_dir: Path, stem: str, result: dict, text: str) -> None:
    """Write ``<stem>.json`` (the figures) and ``<stem>.md`` (the table) into ``out_dir`` and print the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / f"{stem}.json", result)
    write_text_atomic(out_dir / f"{stem}.md", text)
    print(text)
