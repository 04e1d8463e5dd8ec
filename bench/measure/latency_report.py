"""The latency table of ``segbench latency`` as Markdown: one row per method, one column group per input size."""

from __future__ import annotations

import pandas as pd

from segbench.report.format import markdown_table

__all__ = ["latency_markdown"]


def latency_markdown(table: pd.DataFrame) -> str:
    """Median (p95) latency in ms: one row per method, one column per input size; failures listed below."""
    ok = table[table["status"] == "ok"]
    lines = []
    if not ok.empty:
        cell = ok.assign(v=[f"{a:.1f} ({b:.1f})" for a, b in zip(ok["latency_ms_p50"], ok["latency_ms_p95"])])
        methods, sizes = list(dict.fromkeys(ok["method"])), list(dict.fromkeys(ok["image_size"]))
        wide = cell.pivot(index="method", columns="image_size", values="v").reindex(index=methods, columns=sizes)
        mem = ok.pivot(index="method", columns="image_size", values="peak_mem_mb").reindex(index=methods, columns=sizes)
        wide.columns = [f"{c} ms p50 (p95)" for c in wide.columns]
        for c in mem.columns:
            wide[f"{c} peak MB"] = [f"{v:.0f}" for v in mem[c]]
        if (ok["batch_size"] > 1).any():  # throughput is the point of a batch
            ips = ok.pivot(index="method", columns="image_size", values="images_per_s").reindex(index=methods, columns=sizes)
            for c in ips.columns:
                wide[f"{c} img/s"] = [f"{v:.1f}" for v in ips[c]]
        first = ok.iloc[0]
        lines += [
            f"Device: {first['device_name']} ({first['device']}), {int(first['threads'])} threads, batch {int(first['batch_size'])}, "
            f"{int(first['warmup'])} warm-up + {int(first['repeats'])} timed calls.",
            "",
            markdown_table(wide.reset_index()),
        ]
    for r in table[table["status"] != "ok"].itertuples():
        lines.append(f"\n{r.method} at {r.image_size}: {r.error}")
    return "\n".join(lines)
