"""The ``segbench`` command line: run, list, report, validate."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import torch

from segbench import __version__
from segbench.datasets import DATASETS, DataError
from segbench.datasets.base import COMMON_OPTIONS, dataset_entries
from segbench.datasets.transforms import parse_size
from segbench.datasets.validate import validate_dataset
from segbench.measure.roofline import accelerator
from segbench.methods import METHODS, STAGES, SetupError, core_methods, split_spec
from segbench.options import UsageError, csv_of, option_types, parse_assignments, split_csv, typed_options
from segbench.registry import ImportFailed, UnknownNameError, import_modules
from segbench.report import RunData, brief_table, write_report
from segbench.report.summary_table import summary_table
from segbench.report.figures import save_figure, throughput_figure
from segbench.report.latency import latency_markdown
from segbench.run import settings as run_settings
from segbench.run.environment import environment, loaded_machine
from segbench.run.latency import method_latency_table
from segbench.run.runner import RunConfig, run

__all__ = ["main", "method_options", "dataset_options"]

#: Errors in what the user gave (flags, names, data files): one line, exit 2. Anything else is a bug and
#: keeps its traceback.
USER_ERRORS = (UsageError, DataError, UnknownNameError, ImportFailed, SetupError)


def method_options(items: list[str] | None, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--opt`` items, typed and checked against the methods and stages of ``methods`` (raises UsageError)."""
    used = list(dict.fromkeys(part for spec in methods for part in (split_spec(spec)[0], *split_spec(spec)[1])))
    return typed_options(parse_assignments(items, "--opt"),
                         lambda n: option_types(METHODS.get(n) if n in METHODS else STAGES.get(n)),
                         flag="--opt", valid_names=used)


def dataset_options(items: list[str] | None, datasets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--dataset-opt`` items, typed and checked; a name is a dataset kind or a dataset's name in this run."""
    entries = dataset_entries(datasets)
    kind_of = {**{e.kind: e.kind for e in entries}, **{e.name: e.kind for e in entries}}
    declared = lambda n: {**{k: t for k, t in option_types(DATASETS.get(kind_of[n])).items() if k != "strict"},  # noqa: E731
                          **COMMON_OPTIONS}
    return typed_options(parse_assignments(items, "--dataset-opt"), declared, flag="--dataset-opt",
                         valid_names=list(kind_of))


def _writable_folder(path: Path, flag: str = "--out") -> Path:
    """Create ``path`` if needed and check that files can be written in it (raises UsageError)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".segbench-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); choose a folder you can write to") from None
    return path


#: Pipelines the default suite runs beside every registered method: the classical and deep halves' CRF variants.
DEFAULT_PIPELINES = ("slic+crf", "deeplab+crf")


def default_methods() -> list[str]:
    """What ``--methods`` means when not given: every registered method that needs no optional extra (the zoo
    runs when named), then ``DEFAULT_PIPELINES``."""
    names = core_methods()
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
        if cls.extra:
            installed = all(importlib.util.find_spec(m) is not None for m in cls.extra_modules)
            flags += [f"needs segbench[{cls.extra}]: {', '.join(cls.extra_modules)}"
                      f" ({'installed' if installed else f'not installed; make {cls.extra}'})"]
        print(f"  {name:<22} {_describe(cls)} [{', '.join(flags)}]")
    print("Stages (append with +, e.g. slic+crf):")
    for name in STAGES.names():
        print(f"  {name:<22} {_describe(STAGES.get(name))}")
    print("Datasets:")
    for name in DATASETS.names():
        print(f"  {name:<22} {_describe(DATASETS.get(name))}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:

    out = Path(args.out or f"results/run-{datetime.now():%Y%m%d-%H%M%S}")
    datasets = split_csv(args.datasets)
    methods = split_csv(args.methods) if args.methods else default_methods()
    config = RunConfig(
        out=out,
        datasets=datasets,
        methods=methods,
        seeds=args.seeds,
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
        split_file=args.split_file,
        split_seed=args.split_seed,
        split_fractions=tuple(args.split),  # type: ignore[arg-type]
        folds=args.folds,
        method_options=method_options(args.opt, methods),
        dataset_options=dataset_options(args.dataset_opt, datasets),
        # .py paths made absolute, so that Dask workers started elsewhere find them
        imports=[str(Path(i).resolve()) if i.endswith(".py") else i for i in args.imports or []],
        command=shlex.join(["segbench", *args.argv]),
        executor=args.executor,
        executor_options={k: v for k, v in {"scheduler": args.scheduler, "workers": args.workers,
                                            "threads_per_worker": args.threads_per_worker}.items() if v is not None},
        **run_settings.from_args(args),
    )
    try:
        config.validate()
    except ValueError as exc:  # bad combinations of flags (tiles, retries), named by the message
        raise UsageError(str(exc)) from None
    _writable_folder(out)  # last: a command refused for another reason leaves no folder behind
    if args.no_progress:  # also the training bars inside methods (and on local Dask workers started after this)
        os.environ["TQDM_DISABLE"] = "1"
    try:
        result = run(config, progress=not args.no_progress)
    except KeyboardInterrupt:
        finished = len(list(out.glob("cells/*/cell.json")))
        if (out / "summary.csv").is_file():
            write_report(out)
        print(f"\ninterrupted: {finished} cells finished; re-run the same command to resume", file=sys.stderr)
        return 130
    write_report(out)
    print(brief_table(result.summary))
    print(f"\nRun folder: {out}  (summary.csv, per_image.csv, environment.json, report.md, report.html)")
    skipped = result.summary[result.summary["status"] == "skipped"] if len(result.summary) else result.summary
    for row in skipped.itertuples():
        print(f"skipped {row.dataset} / {row.method} / seed {row.seed}: {row.error}")
    if result.failures:
        print(f"\n{len(result.failures)} cell(s) failed:", file=sys.stderr)
        for f in result.failures:
            print(f"  {f['dataset']} / {f['method']} / seed {f['seed']} / fold {f['fold']}: {f['error']}", file=sys.stderr)
        return 1
    return 0


def _positive_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in split_csv(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"{flag} {text!r}: give positive integers separated by commas, e.g. 1,2,4,8")
    return values


def _cmd_latency(args: argparse.Namespace) -> int:

    sizes = []
    for text in split_csv(args.sizes):
        size = parse_size(text)
        if not isinstance(size, tuple):
            raise UsageError(f"--sizes needs WIDTHxHEIGHT values such as 256x256, got {text!r}")
        sizes.append(size)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: CUDA is not available here; use --device cpu")
    methods = split_csv(args.methods) if args.methods else default_methods()
    for spec in methods:
        problem = METHODS.get(split_spec(spec)[0]).unavailable()  # unknown names fail here, listing the known ones
        if problem:  # a missing optional extra, before any timing
            raise SetupError(problem)
    out = _writable_folder(Path(args.out or f"results/latency-{datetime.now():%Y%m%d-%H%M%S}"))
    batches = _positive_ints(args.batch, "--batch")
    if args.roofline:
        try:
            accelerator(args.roofline)  # an unknown name fails here, listing the known ones
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    config = {"methods": methods, "sizes": args.sizes, "device": args.device, "amp": args.amp, "warmup": args.warmup,
              "repeats": args.repeats, "batch": batches, "threads": args.threads, "roofline": args.roofline}
    (out / "environment.json").write_text(json.dumps(environment(config), indent=1, default=str))
    table = method_latency_table(methods, sizes, device=args.device, amp=args.amp, warmup=args.warmup,
                                 repeats=args.repeats, batch_sizes=batches, threads=args.threads, roofline=args.roofline)
    table.to_csv(out / "latency.csv", index=False)
    env = json.loads((out / "environment.json").read_text())
    text = latency_markdown(table) + (f"\n\n{loaded_machine(env)}" if loaded_machine(env) else "")
    (out / "latency.md").write_text(text)
    print(text)
    if len(batches) > 1:
        figure = throughput_figure(table)
        if figure is not None:
            print(f"Throughput figure: {save_figure(figure, out, 'throughput')}")
    print(f"\nWritten: {out / 'latency.csv'}")
    return 1 if (table["status"] == "failed").any() else 0


def _cmd_report(args: argparse.Namespace) -> int:

    formats = split_csv(args.format)
    bad = [f for f in formats if f not in ("md", "html")]
    if bad:
        raise UsageError(f"--format {args.format}: unknown report format(s) {bad}; choose from md, html")
    if not (Path(args.run_dir) / "summary.csv").is_file():
        raise UsageError(f"{args.run_dir}: no summary.csv; give a run folder written by 'segbench run'")
    out = _writable_folder(Path(args.out) if args.out else Path(args.run_dir))
    write_report(args.run_dir, out_dir=out, formats=formats, figures=not args.no_figures)  # type: ignore[arg-type]
    print((out / "verdict.txt").read_text(), end="")
    written = [str(out / f"report.{f}") for f in formats] + ([str(out / "figures")] if not args.no_figures else [])
    print(f"\nWritten: {', '.join(written + [str(out / 'tables')])}")
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    if not (Path(args.run_dir) / "summary.csv").is_file():
        raise UsageError(f"{args.run_dir}: no summary.csv; give a run folder written by 'segbench run'")
    metrics = split_csv(args.metrics) if args.metrics else None
    try:
        print(summary_table(RunData.load(args.run_dir), args.dataset, metrics=metrics))
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc).strip("'\"")) from None
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:

    (entry,) = dataset_entries([args.dataset])
    options = entry.options(dataset_options(args.dataset_opt, [args.dataset]))
    report = validate_dataset(entry.spec, data_dir=args.data_dir, options=options)
    for note in report.notes:
        print(note)
    for warning in report.warnings:
        print(f"WARNING: {warning}")
    for problem in report.problems:
        print(problem)
    verdict = "no problems" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"{report.dataset}: {report.checked} image(s) checked, {verdict}")
    return 0 if report.ok else 1


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``segbench: error: argument --seeds: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"segbench: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="segbench", description="Compare segmentation methods under one protocol.")
    parser.add_argument("--version", action="version", version=f"segbench {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--import", dest="imports", action="append", metavar="MODULE_OR_FILE.py",
                        help="a module name or .py file that registers your own methods, stages or datasets "
                             "(repeatable; found from the current folder; dask workers import it too)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", parents=[common], help="fit and score methods on datasets; write a run folder")
    p.add_argument("--datasets", default="synthetic",
                   help="comma-separated names, NAME:PATH or NAME:LABEL=PATH, e.g. folder:skin=data/skin (default: synthetic)")
    p.add_argument("--methods", default=None, help="comma-separated specs such as otsu,slic+crf (default: every method, plus slic+crf and deeplab+crf)")
    p.add_argument("--seeds", default=[0], type=csv_of(int), help="comma-separated method seeds (default: 0)")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (default: $SEGBENCH_DATA_DIR)")
    p.add_argument("--split-file", default=None, help="CSV with columns image_id,split that overrides the split")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split, shared by all methods")
    p.add_argument("--split", default=[0.6, 0.2, 0.2], type=csv_of(float, count=3), help="train,val,test fractions (default: 0.6,0.2,0.2)")
    p.add_argument("--folds", type=int, default=None,
                   help="K-fold cross-validation (stratified, seeded by --split-seed): every image tested once")
    p.add_argument("--opt", action="append", metavar="METHOD.KEY=VALUE", help="method or stage option (repeatable)")
    p.add_argument("--dataset-opt", action="append", metavar="DATASET.KEY=VALUE", help="dataset option (repeatable)")
    run_settings.add_flags(p)  # --size, --quick, --train-fraction, --budget-s, ...: one per declared setting
    p.add_argument("--out", default=None, help="run folder (default: results/run-<timestamp>); re-use it to resume")
    p.add_argument("--executor", choices=["local", "dask"], default="local", help="where cells run (default: local)")
    p.add_argument("--scheduler", default=None, help="dask: address of a running scheduler, e.g. tcp://host:8786")
    p.add_argument("--workers", type=int, default=None,
                   help="cells run at a time, each in its own process (local: default 1; dask: LocalCluster workers)")
    p.add_argument("--threads-per-worker", type=int, default=None, help="dask LocalCluster: threads per cell (as --threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("list", parents=[common], help="registered methods, stages and datasets")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("latency", parents=[common], help="inference latency of methods at given input sizes (no full run)")
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

    p = sub.add_parser("report", parents=[common], help="HTML and markdown report with figures, from a run folder's tables")
    p.add_argument("run_dir")
    p.add_argument("--format", default="html,md", help="comma-separated report formats: html, md (default: both)")
    p.add_argument("--out", default=None, help="report folder (default: the run folder)")
    p.add_argument("--no-figures", action="store_true", help="tables only (figures are PNG and SVG under figures/)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("table", parents=[common], help="the README's results table of a run folder (markdown, one row per method)")
    p.add_argument("run_dir")
    p.add_argument("--dataset", default=None, help="the dataset to tabulate (needed when the run has several)")
    p.add_argument("--metrics", default=None, metavar="M1,M2",
                   help="score metrics in order (default: dice,iou,bf1,cldice,ece for a binary task, "
                        "iou,pixel_accuracy,mean_pixel_accuracy,ece otherwise; those the run scored)")
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser("validate", parents=[common], help="check every image and mask of a dataset; exit 1 if anything is wrong")
    p.add_argument("dataset", help="NAME or NAME:PATH, as for run --datasets")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets (default: $SEGBENCH_DATA_DIR)")
    p.add_argument("--dataset-opt", action="append", metavar="DATASET.KEY=VALUE", help="dataset option (repeatable)")
    p.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a flag argparse refused (its one line is printed)
        return int(exc.code or 0)
    args.argv = argv
    try:
        import_modules(args.imports or [])
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"segbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a run (which says how many cells finished)
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
