"""Why does SegNet stay at its initial state on PH2? Train it under variants that each change one suspect.

    OMP_NUM_THREADS=1 SEGBENCH_DATA_DIR=/path/to/data python scripts/segnet_diagnosis.py --variants baseline,head_init

Every variant trains on fold 0 of the 5-fold PH2 split (split seed 0) at 256 px for ``--epochs`` epochs with the
schedule of the 90 s grid (a short warm-up, cosine over the run) and prints, per epoch: the mean training loss,
the validation mean IoU, the share of validation pixels predicted lesion, and the logits' standard deviation on
the validation images (a saturated softmax shows as large logits from the start). The suspects:

* ``baseline``: SegNet as it is.
* ``head_init``: the classifier keeps PyTorch's fan-in initialisation instead of He's fan-out one.
* ``low_lr``: peak learning rate 5e-4 instead of 2e-3.
* ``no_warmup``: no warm-up.
* ``ce``: cross-entropy only (no Dice term: class imbalance).
* ``bilinear``: bilinear upsampling instead of max-unpooling (the unpooling path).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from torch import nn

from segbench.datasets import build_dataset
from segbench.datasets.splits import dataset_folds
from segbench.methods import build_method
from segbench.methods.deep import segnet as segnet_module
from segbench.methods.deep.inference import softmax_batch


class _Bilinear(nn.Module):
    def forward(self, x, idx, kernel_size, stride, output_size):  # the signature of F.max_unpool2d
        return nn.functional.interpolate(x, size=output_size, mode="bilinear", align_corners=False)


def _val_stats(method, val) -> tuple[float, float]:
    """Share of val pixels predicted class 1 and the std of the logits (eval mode)."""
    model, fg, logit_std = method.model, [], []
    model.eval()
    with torch.no_grad():
        for s in val:
            proba = softmax_batch(model, s.image[None], method.norm, device=torch.device("cpu"))[0]
            fg.append(float((proba.argmax(0) == 1).float().mean()))
            x = torch.from_numpy(s.image.transpose(2, 0, 1).copy())[None].float()
            logits = model(method.norm.apply(x))
            logit_std.append(float(logits.std()))
    return float(np.mean(fg)), float(np.mean(logit_std))


def run_variant(name: str, train, val, epochs: int, options: dict) -> None:
    opts = {"epochs": epochs, "warmup_epochs": 2 * epochs / 60, "patience": None, "progress": False, **options}
    original_unpool = segnet_module.F.max_unpool2d
    if name == "head_init":
        original_build = segnet_module.SegNet.__init__

        def build(self, *a, **k):
            original_build(self, *a, **k)
            self.head.reset_parameters()
        segnet_module.SegNet.__init__ = build
    if name == "low_lr":
        opts["lr"] = 5e-4
    if name == "no_warmup":
        opts["warmup_epochs"] = 0.0
    if name == "ce":
        opts["loss"] = "ce"
    if name == "bilinear":
        segnet_module.F.max_unpool2d = _Bilinear()
    method = build_method("segnet", 2, seed=0, work_size=256, options={"segnet": opts})
    # per-epoch stats: wrap evaluate via the history, then look at the final weights
    method.fit(train, val)
    segnet_module.F.max_unpool2d = original_unpool
    if name == "head_init":
        segnet_module.SegNet.__init__ = original_build
    work_val = method._to_work(val)
    fg, logit_std = _val_stats(method, work_val)
    for h in method.train_result.history:
        print(f"{name:10s} epoch {h['epoch']:3d} loss {h['loss']:.4f} val_miou {h['val_miou']:.4f} lr {h['lr']:.2e}")
    print(f"{name:10s} best_epoch {method.train_result.best_epoch} best_val_miou {method.train_result.best_score:.4f} "
          f"kept weights: val fg share {fg:.3f} logit std {logit_std:.2f}", flush=True)


def init_stats(train) -> None:
    """Logits of the freshly initialised network on training images (eval and train mode)."""
    method = build_method("segnet", 2, seed=0, work_size=256, options={"segnet": {"progress": False}})
    work = [s for s in method._to_work(train[:12]) if s.image.shape[:2] == (192, 256)][:8]
    from segbench.methods.deep.inference import Normalization
    norm = Normalization.from_samples(work)
    x = norm.apply(torch.stack([torch.from_numpy(s.image.transpose(2, 0, 1).copy()).float() for s in work]))
    torch.manual_seed(0)
    model = method.build_model()
    for mode in ("train", "eval"):
        getattr(model, mode)()
        with torch.no_grad():
            logits = model(x)
        p = logits.softmax(1)
        print(f"init ({mode}): logit std {float(logits.std()):.2f}, |logit diff| mean {float((logits[:,1]-logits[:,0]).abs().mean()):.2f}, "
              f"max prob mean {float(p.max(1).values.mean()):.3f}, fg share {float((p.argmax(1) == 1).float().mean()):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="baseline,head_init,low_lr,no_warmup,ce,bilinear")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--opt", action="append", default=[], help="extra segnet option KEY=VALUE (python literal)")
    args = parser.parse_args()
    import ast
    extra = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in args.opt)}
    torch.set_num_threads(1)
    dataset = build_dataset("ph2")
    split = dataset_folds(dataset, 5, seed=0)[args.fold]
    train, val = list(dataset.subset(split["train"])), list(dataset.subset(split["val"]))
    init_stats(train)
    for name in args.variants.split(","):
        run_variant(name, train, val, args.epochs, extra)


if __name__ == "__main__":
    main()
