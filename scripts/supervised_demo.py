"""Train a small classifier on synthetic spirals with the rlkit training core alone.

Shows every practice the core implements, in the order the CS231n notes recommend:

1. data: ``--classes`` interleaved 2-D spiral arms with noise, split 70/15/15 into train,
   validation and test, standardised with the *training* mean and std (Sutskever's advice);
2. a gradient check of the loss in float64 on four examples (``rlkit.gradcheck``, ReLU kinks
   detected and skipped);
3. initial loss against chance ``ln C`` (last layer initialised small) and overfitting a tiny
   batch of 10 examples to ~zero loss (``rlkit.sanity``);
4. training with SGD + Nesterov momentum at LR 0.1 on batch-mean losses, global-norm clipping,
   ``ReduceOnPlateau`` on the validation loss, an EMA of the weights used for every evaluation,
   ``EarlyStopping`` on the validation loss keeping the best EMA weights, and TensorBoard logs
   (``--logdir``) of losses, accuracies, LR, update/weight ratios and activation statistics.

It prints one JSON object; ``test_accuracy`` is measured once, on the best-validation weights.

Documented result (3 classes, 400 points per class, noise 0.2, the defaults), measured for
seeds 0-3 on a shared 2-core machine with one torch thread: validation accuracy 0.98-1.00, test
accuracy 0.99-1.00, early stopping after 18-84 epochs, 1-6 s. A linear classifier trained on the
same split reaches only 0.51 test accuracy (seed 0). ``tests/test_core_demo.py`` runs a smaller
budget (300 points per class, at most 25 epochs, about 1 s) and asserts >= 0.95 on both splits.

Run: ``python scripts/supervised_demo.py --logdir runs/demo`` and ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rlkit.averaging import EMA
from rlkit.early_stopping import EarlyStopping
from rlkit.gradcheck import gradcheck
from rlkit.grads import batch_mean
from rlkit.init import apply_init, lazy_normal_
from rlkit.logger import Logger
from rlkit.monitors import UpdateRatioWarning
from rlkit.optim import OptimizerConfig, build_optimizer
from rlkit.sanity import chance_loss, check_initial_loss, overfit_tiny_batch
from rlkit.schedules import ReduceOnPlateau
from rlkit.update import UpdateStep


def make_spirals(
    classes: int, per_class: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` spiral arms of ``per_class`` points each, with Gaussian angular noise."""
    xs, ys = [], []
    for k in range(classes):
        r = np.linspace(0.0, 1.0, per_class)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, per_class) + rng.normal(0, noise, per_class)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(per_class, k))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def split(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Shuffle, split 70/15/15, and standardise every split with the training statistics."""
    order = rng.permutation(len(x))
    n_train, n_val = int(0.7 * len(x)), int(0.15 * len(x))
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    mean, std = x[parts["train"]].mean(0), x[parts["train"]].std(0)
    return {
        name: (torch.from_numpy((x[idx] - mean) / std), torch.from_numpy(y[idx]))
        for name, idx in parts.items()
    }


def make_model(classes: int, hidden: int) -> nn.Sequential:
    model = nn.Sequential(
        nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, classes),
    )
    apply_init(model, "kaiming_normal")
    # Small logits at the start: the prediction is uniform and the loss is ln C (CS231n).
    lazy_normal_(model[-1].weight, std=1e-3)
    return model


def ce_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return batch_mean(nn.functional.cross_entropy(model(x), y, reduction="none"))


@torch.no_grad()
def evaluate(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    logits = model(batch[0])
    loss = nn.functional.cross_entropy(logits, batch[1]).item()
    return loss, (logits.argmax(1) == batch[1]).float().mean().item()


def check_gradients(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Gradient check of the loss on 4 examples in float64; returns the worst relative error."""
    model64 = copy.deepcopy(model).double()
    small = (batch[0][:4].double(), batch[1][:4])
    report = gradcheck(lambda: ce_loss(model64, small), model64, h=1e-5)
    if not report.passed:
        raise RuntimeError(f"gradient check failed:\n{report.summary()}")
    return max(report.worst.values())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--per-class", type=int, default=400)
    p.add_argument("--noise", type=float, default=0.2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=150, help="upper bound; early stopping decides")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", default=None, help="TensorBoard directory (default: no logging)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = split(*make_spirals(args.classes, args.per_class, args.noise, rng), rng)
    train_x, train_y = data["train"]
    model = make_model(args.classes, args.hidden)

    worst_grad_error = check_gradients(model, data["train"])
    initial_loss, _ = evaluate(model, data["train"])
    check_initial_loss(initial_loss, args.classes)
    overfit = overfit_tiny_batch(model, ce_loss, (train_x[:10], train_y[:10]))

    logger = Logger(args.logdir)
    optimizer = build_optimizer(
        model, OptimizerConfig("sgd", lr=args.lr, momentum=0.9, nesterov=True)
    )
    plateau = ReduceOnPlateau(args.lr, factor=0.5, patience=3, min_value=args.lr / 100)
    step = UpdateStep(model, optimizer, max_grad_norm=5.0, lr_schedule=plateau,
                      monitor_every=100, logger=logger)
    ema = EMA(model, decay=0.99, warmup=True)
    early = EarlyStopping(patience=10)
    best_state = copy.deepcopy(ema.module.state_dict())
    stopped_by, epoch = "epochs", 0
    gen = torch.Generator().manual_seed(args.seed)
    with warnings.catch_warnings():
        # The ratio heuristic is logged to TensorBoard; warnings would only clutter the demo.
        warnings.simplefilter("ignore", UpdateRatioWarning)
        for epoch in range(1, args.epochs + 1):
            model.train()
            order = torch.randperm(len(train_x), generator=gen)
            for i in range(0, len(order), args.batch_size):
                idx = order[i : i + args.batch_size]
                with step.capture_activations():
                    loss = ce_loss(model, (train_x[idx], train_y[idx]))
                step.update(loss)
                ema.update()
            val_loss, val_acc = evaluate(ema.module, data["val"])
            train_loss, train_acc = evaluate(ema.module, data["train"])
            logger.scalars({"loss": train_loss, "accuracy": train_acc}, epoch, prefix="train/")
            logger.scalars({"loss": val_loss, "accuracy": val_acc, "lr": step.lr}, epoch,
                           prefix="val/")
            if early.step(val_loss):
                stopped_by = "early_stopping"
            if early.improved:
                best_state = copy.deepcopy(ema.module.state_dict())
            if plateau.observe(val_loss):
                stopped_by = "lr_floor"
            if stopped_by != "epochs":
                break
    ema.module.load_state_dict(best_state)
    val_loss, val_acc = evaluate(ema.module, data["val"])
    _, test_acc = evaluate(ema.module, data["test"])
    logger.close()
    result = {
        "val_accuracy": round(val_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "val_loss": round(val_loss, 4),
        "epochs": epoch,
        "stopped_by": stopped_by,
        "best_epoch": (early.best_step or 0) + 1,
        "updates": step.updates,
        "final_lr": step.lr,
        "gradcheck_worst_rel_error": worst_grad_error,
        "initial_loss": round(initial_loss, 4),
        "chance_loss": round(chance_loss(args.classes), 4),
        "tiny_batch_final_loss": overfit.final_loss,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(main(), indent=2))
