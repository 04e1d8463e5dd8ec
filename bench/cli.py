"""The ``segbench`` command line: run, list, report, validate."""

from __future__ import annotations

import argparse
import ast
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from segbench.datasets import DATASETS, DataError
from segbench.datasets.transforms import parse_size
from segbench.methods import METHODS, STAGES, split_spec
from segbench.registry import UnknownNameError

__all__ = ["main", "parse_options"]


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_options(items: list[str] | None, what: str) -> dict[str, dict[str, Any]]:
    """``["slic.n_segments=400", "crf.iterations=5"]`` -> ``{"slic": {"n_segments": 400}, "crf": {...}}``.

    Values are Python literals (numbers, True/False, None, quoted strings, tuples); anything else is a string.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        name, dot, rest = item.partition(".")
        key, eq, raw = rest.partition("=")
        if not dot or not eq or not name or not key:
            raise ValueError(f"{what} option {item!r} is malformed; write NAME.KEY=VALUE, e.g. pixel-rf.n_estimators=100")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out.setdefault(name, {})[key] = value
    return out


#: Pipelines the default suite runs beside every registered method: the classical and deep halves' CRF variants.
DEFAULT_PIPELINES = ("slic+crf", "deeplab+crf")


def default_methods() -> list[str]:
    """What ``--methods`` means when not given: every registered method, then ``DEFAULT_PIPELINES``."""
    names = METHODS.names()
    return names + [spec for spec in DEFAULT_PIPELINES if split_spec(spec)[0] in names]


def _describe(cls: type) -> str:
    return cls.description or (cls.__doc__ or "").strip().splitlines()[0]


def _cmd_list(args: argparse.Namespace) -> int:
    print("Methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        flags = [cls.family, "trains" if cls.needs_training else "no training"]
        flags += ["gpu"] if cls.supports_gpu else []
        flags += ["binary only"] if cls.binary_only else []
        print(f"  {name:<22} {_describe(cls)} [{', '.join(flags)}]")
    print("Stages (append with +, e.g. slic+crf):")
    for name in STAGES.names():
        print(f"  {name:<22} {_describe(STAGES.get(name))}")
    print("Datasets:")
    for name in DATASETS.names():
        print(f"  {name:<22} {_describe(DATASETS.get(name))}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from segbench.report import brief_table, write_report
    from segbench.run.runner import RunConfig, run

    fractions = tuple(float(v) for v in _csv(args.split))
    if len(fractions) != 3:
        raise ValueError(f"--split {args.split!r} needs three fractions TRAIN,VAL,TEST, e.g. 0.6,0.2,0.2")
    out = Path(args.out or f"results/run-{datetime.now():%Y%m%d-%H%M%S}")
    config = RunConfig(
        out=out,
        datasets=_csv(args.datasets),
        methods=_csv(args.methods) if args.methods else default_methods(),
        seeds=[int(s) for s in _csv(args.seeds)],
        data_dir=args.data_dir,
        split_file=args.split_file,
        split_seed=args.split_seed,
        split_fractions=fractions,  # type: ignore[arg-type]
        size=parse_size(args.size),
        save_predictions=args.save_predictions,
        quick=args.quick,
        warmup=args.warmup,
        method_options=parse_options(args.opt, "method"),
        dataset_options=parse_options(args.dataset_opt, "dataset"),
        imports=args.imports or [],
        executor=args.executor,
        executor_options={k: v for k, v in {"scheduler": args.scheduler, "workers": args.workers,
                                            "threads_per_worker": args.threads_per_worker}.items() if v},
        retries=args.retries,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
    )
    if args.no_progress:  # also the training bars inside methods (and on local Dask workers started after this)
        os.environ["TQDM_DISABLE"] = "1"
    result = run(config, progress=not args.no_progress)
    write_report(out)
    print(brief_table(result.summary))
    print(f"\nRun folder: {out}  (summary.csv, per_image.csv, environment.json, report.md, report.html)")
    if result.failures:
        print(f"\n{len(result.failures)} cell(s) failed:", file=sys.stderr)
        for f in result.failures:
            print(f"  {f['dataset']} / {f['method']} / seed {f['seed']}: {f['error']}", file=sys.stderr)
        return 1
    return 0


def _positive_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in _csv(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"{flag} {text!r}: give positive integers separated by commas, e.g. 1,2,4,8")
    return values


def _cmd_latency(args: argparse.Namespace) -> int:
    import json

    from segbench.run.environment import environment
    from segbench.measure.latency import method_latency_table
    from segbench.measure.roofline import accelerator
    from segbench.report import latency_markdown
    from segbench.report.figures import save_figure, throughput_figure

    sizes = []
    for text in _csv(args.sizes):
        size = parse_size(text)
        if not isinstance(size, tuple):
            raise ValueError(f"--sizes needs WIDTHxHEIGHT values such as 256x256, got {text!r}")
        sizes.append(size)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available here; use --device cpu")
    methods = _csv(args.methods) if args.methods else default_methods()
    for spec in methods:
        split_spec(spec)  # unknown names fail here, listing the known ones, before any timing
    out = Path(args.out or f"results/latency-{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    batches = _positive_ints(args.batch, "--batch")
    if args.roofline:
        accelerator(args.roofline)  # an unknown name fails here, listing the known ones
    config = {"methods": methods, "sizes": args.sizes, "device": args.device, "amp": args.amp, "warmup": args.warmup,
              "repeats": args.repeats, "batch": batches, "threads": args.threads, "roofline": args.roofline}
    (out / "environment.json").write_text(json.dumps(environment(config), indent=1, default=str))
    table = method_latency_table(methods, sizes, device=args.device, amp=args.amp, warmup=args.warmup,
                                 repeats=args.repeats, batch_sizes=batches, threads=args.threads, roofline=args.roofline)
    table.to_csv(out / "latency.csv", index=False)
    text = latency_markdown(table)
    (out / "latency.md").write_text(text)
    print(text)
    if len(batches) > 1:
        figure = throughput_figure(table)
        if figure is not None:
            print(f"Throughput figure: {save_figure(figure, out, 'throughput')}")
    print(f"\nWritten: {out / 'latency.csv'}")
    return 1 if (table["status"] == "failed").any() else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from segbench.report import write_report

    formats = _csv(args.format)
    out = Path(args.out) if args.out else Path(args.run_dir)
    text = write_report(args.run_dir, out_dir=out, formats=formats, figures=not args.no_figures)  # type: ignore[arg-type]
    if "md" in formats:
        print(text)
    written = [str(out / f"report.{f}") for f in formats] + ([str(out / "figures")] if not args.no_figures else [])
    print(f"\nWritten: {', '.join(written)}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from segbench.datasets.base import parse_dataset_spec
    from segbench.datasets.validate import validate_dataset

    name, _ = parse_dataset_spec(args.dataset)
    report = validate_dataset(args.dataset, data_dir=args.data_dir, options=parse_options(args.dataset_opt, "dataset").get(name))
    for problem in report.problems:
        print(problem)
    verdict = "no problems" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"{report.dataset}: {report.checked} image(s) checked, {verdict}")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segbench", description="Compare segmentation methods under one protocol.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="fit and score methods on datasets; write a run folder")
    p.add_argument("--datasets", default="synthetic", help="comma-separated names, or NAME:PATH (default: synthetic)")
    p.add_argument("--methods", default=None, help="comma-separated specs such as otsu,slic+crf (default: every method, plus slic+crf and deeplab+crf)")
    p.add_argument("--seeds", default="0", help="comma-separated method seeds (default: 0)")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (default: $SEGBENCH_DATA_DIR)")
    p.add_argument("--split-file", default=None, help="CSV with columns image_id,split that overrides the split")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split, shared by all methods")
    p.add_argument("--split", default="0.6,0.2,0.2", help="train,val,test fractions (default: 0.6,0.2,0.2)")
    p.add_argument("--size", default=None, help="working resolution: longer side (256) or WxH (256x192); default: per method")
    p.add_argument("--save-predictions", action="store_true", help="write each predicted label map as a PNG")
    p.add_argument("--quick", action="store_true", help="small budgets (each method's quick_options): the default suite")
    p.add_argument("--warmup", type=int, default=1, help="untimed predictions before timing (default: 1)")
    p.add_argument("--opt", action="append", metavar="METHOD.KEY=VALUE", help="method or stage option (repeatable)")
    p.add_argument("--dataset-opt", action="append", metavar="DATASET.KEY=VALUE", help="dataset option (repeatable)")
    p.add_argument("--tile", type=int, default=None, help="predict in square tiles of this many pixels at the working size")
    p.add_argument("--tile-overlap", type=int, default=64, help="pixels shared by neighbouring tiles (default: 64)")
    p.add_argument("--out", default=None, help="run folder (default: results/run-<timestamp>); re-use it to resume")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import a module that registers your own methods or datasets (repeatable; dask workers too)")
    p.add_argument("--executor", choices=["local", "dask"], default="local", help="where cells run (default: local)")
    p.add_argument("--scheduler", default=None, help="dask: address of a running scheduler, e.g. tcp://host:8786")
    p.add_argument("--workers", type=int, default=None, help="dask: LocalCluster worker processes")
    p.add_argument("--threads-per-worker", type=int, default=None, help="dask: torch threads per cell on a LocalCluster")
    p.add_argument("--retries", type=int, default=1, help="times a failed cell is tried again (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("list", help="registered methods, stages and datasets")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("latency", help="inference latency of methods at given input sizes (no full run)")
    p.add_argument("--methods", default=None, help="comma-separated specs (default: every method)")
    p.add_argument("--sizes", default="256x256,512x512", help="comma-separated WIDTHxHEIGHT input sizes")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (deep methods; classical ones run on the CPU)")
    p.add_argument("--amp", action="store_true", help="mixed precision for deep methods on CUDA")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls (default: 10)")
    p.add_argument("--batch", default="1",
                   help="comma-separated images per timed call, e.g. 1,2,4,8,16: images/s of a batched forward pass "
                        "for deep methods, with a throughput figure when several are given (default: 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch, BLAS/OpenMP and scikit-learn (default: torch's, i.e. OMP_NUM_THREADS)")
    p.add_argument("--roofline", default=None, metavar="ACCELERATOR",
                   help="add a lower bound on each deep method's latency on this accelerator (h200, h100, a100) "
                        "from its FLOPs and the bytes it must move")
    p.add_argument("--out", default=None, help="folder for latency.csv (default: results/latency-<timestamp>)")
    p.set_defaults(func=_cmd_latency)

    p = sub.add_parser("report", help="HTML and markdown report with figures, from a run folder's tables")
    p.add_argument("run_dir")
    p.add_argument("--format", default="html,md", help="comma-separated report formats: html, md (default: both)")
    p.add_argument("--out", default=None, help="report folder (default: the run folder)")
    p.add_argument("--no-figures", action="store_true", help="tables only (figures are PNG and SVG under figures/)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("validate", help="check every image and mask of a dataset; exit 1 if anything is wrong")
    p.add_argument("dataset", help="NAME or NAME:PATH, as for run --datasets")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (default: $SEGBENCH_DATA_DIR)")
    p.add_argument("--dataset-opt", action="append", metavar="DATASET.KEY=VALUE", help="dataset option (repeatable)")
    p.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UnknownNameError, DataError, ValueError, TypeError, FileNotFoundError, ModuleNotFoundError) as exc:
        print(f"segbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
