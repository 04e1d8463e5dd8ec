"""The latency table of ``segbench latency`` (``segbench.run.latency``) as Markdown: one row per method (and
batch size), one column group per input size."""

from __future__ import annotations

import pandas as pd

from segbench.report.format import markdown_table

__all__ = ["latency_markdown"]


def latency_markdown(table: pd.DataFrame) -> str:
    """Median (p95) latency in ms, its model / overhead split, peak memory, and for deep methods GFLOPs per image
    (and a roofline bound when asked): one row per method (and batch size), columns per input size; failures below."""
    ok = table[table["status"] == "ok"]
    lines = []
    if not ok.empty:
        several = ok["batch_size"].nunique() > 1
        ok = ok.assign(row=[f"{m} (batch {int(b)})" if several else m for m, b in zip(ok["method"], ok["batch_size"])])
        # "!": p95 more than twice p50, a spread that usually means other work shared the cores (said below)
        ok = ok.assign(v=[f"{a:.1f} ({b:.1f}{' !' if b > 2 * a else ''})" for a, b in zip(ok["latency_ms_p50"], ok["latency_ms_p95"])])
        rows, sizes = list(dict.fromkeys(ok["row"])), list(dict.fromkeys(ok["image_size"]))

        def column(values: str) -> pd.DataFrame:
            return ok.pivot(index="row", columns="image_size", values=values).reindex(index=rows, columns=sizes)

        wide = column("v")
        wide.columns = [f"{c} ms p50 (p95)" for c in wide.columns]
        wide.index.name = "method"
        parts = [("model_ms_p50", "model ms", 1), ("overhead_ms_p50", "overhead ms", 2), ("peak_mem_mb", "peak MB", 0)]
        if (ok["batch_size"] > 1).any():  # throughput is the point of a batch
            parts.append(("images_per_s", "img/s", 1))
        parts += [("flops", "GFLOPs", 2), ("roofline_ms", "roofline ms", 3)]
        for name, label, digits in parts:
            if name not in ok or ok[name].isna().all():
                continue
            values = column(name) / (1e9 if name == "flops" else 1)
            for c in values.columns:
                wide[f"{c} {label}"] = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in values[c]]
        if "params" in ok and ok["params"].notna().any():
            wide["params (M)"] = [f"{v / 1e6:.2f}" if pd.notna(v) else "" for v in ok.groupby("row")["params"].first().reindex(rows)]
        first = ok.iloc[0]
        batches = ", ".join(str(int(b)) for b in dict.fromkeys(ok["batch_size"]))
        lines += [
            f"Device: {first['device_name']} ({first['device']}), {int(first['threads'])} threads, batch {batches}, "
            f"{int(first['warmup'])} warm-up + {int(first['repeats'])} timed calls. model: the method's own work at its "
            "working size; overhead: conversion, resizes and argmax (batch 1 only)."
            + (f" Roofline: lower bound on {first['roofline_device']} (bf16, from FLOPs and bytes moved)."
               if "roofline_device" in ok and pd.notna(first.get("roofline_device")) else ""),
            "",
            markdown_table(wide.reset_index()),
        ]
        if (ok["latency_ms_p95"] > 2 * ok["latency_ms_p50"]).any():
            lines += ["", "! p95 more than twice p50: other work probably shared the cores during the timing."]
    for r in table[table["status"] != "ok"].itertuples():
        lines.append(f"\n{r.method} at {r.image_size}: {r.error}")
    return "\n".join(lines)
