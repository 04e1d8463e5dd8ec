"""What each zoo network costs on the CPU: parameters, forward GFLOPs and train milliseconds per image.

One training step is what segbench's loop does per batch (forward, cross-entropy, backward, AdamW step) on
random images of the given size, timed ``--steps`` times after one untimed warm-up step; the table gives the
median per image, in CPU seconds of this process (``time.process_time``: a shared, loaded machine stretches
the wall clock but not the work; the training loop's budget clock counts the same). ``fp32`` runs as the loop does on the CPU; ``bf16`` under ``torch.autocast("cpu",
torch.bfloat16)`` with channels-last memory. Run it in the zoo venv, one thread::

    OMP_NUM_THREADS=1 .venv-zoo/bin/python scripts/zoo_costs.py --size 256x192 --batch 4

Prints a Markdown table (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from segbench.methods import METHODS, build_method


def train_ms_per_image(model: torch.nn.Module, batch: int, shape: tuple[int, int], *, bf16: bool, steps: int) -> float:
    torch.manual_seed(0)
    images = torch.randn(batch, 3, *shape)
    targets = torch.randint(0, 2, (batch, *shape))
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for step in range(steps + 1):  # the first is a warm-up
        start = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = torch.nn.functional.cross_entropy(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:
            times.append((time.process_time() - start) * 1000 / batch)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(n for n in METHODS.names() if METHODS.get(n).extra == "zoo"))
    parser.add_argument("--size", default="256x192", help="WIDTHxHEIGHT (PH2's work size: 256x192)")
    parser.add_argument("--batch", type=int, default=4, help="images per step (the training loop's default: 4)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per precision")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    rows = [f"| method | params M | GFLOPs at {args.size} | train CPU ms/image fp32 | train CPU ms/image bf16 | bf16 speed-up |",
            "| --- | --- | --- | --- | --- | --- |"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, {args.steps} timed steps",
          file=sys.stderr)
    for name in args.methods.split(","):
        method = build_method(name, 2)
        model = method.build_model().eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, height, width))
        params = sum(p.numel() for p in model.parameters())
        fp32 = train_ms_per_image(method.build_model(), args.batch, (height, width), bf16=False, steps=args.steps)
        bf16 = train_ms_per_image(method.build_model(), args.batch, (height, width), bf16=True, steps=args.steps)
        rows.append(f"| `{name}` | {params / 1e6:.1f} | {counter.get_total_flops() / 1e9:.2f} | {fp32:.0f} | {bf16:.0f} | "
                    f"{fp32 / bf16:.2f}x |")
        print(rows[-1], file=sys.stderr)
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
