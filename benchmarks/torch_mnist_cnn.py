"""configs/mnist_cnn.yaml written as a plain PyTorch script, for benchmarks/e2e_epoch.py.

    python benchmarks/torch_mnist_cnn.py --epochs 1 --threads 2

Same network (conv 32 - batchnorm - relu - maxpool, conv 64 - batchnorm - relu
- maxpool, dense 128 - relu - dropout 0.3, dense 10), the same data (netcli's
cached MNIST, pixels / 255, the same seeded validation split), the same batch
order (netcli's trainer: a permutation per epoch from default_rng([seed, 1])),
batch size 64, Adam at 2e-3 with 200 linear warmup steps into a cosine decay
to 1e-5, and at the end of each epoch what the trainer does too: evaluate the
validation split and write a best and a last checkpoint. Weight init is
torch's own. Prints one JSON line: loop time, steps, final metrics.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED, BATCH, VAL_FRACTION = 0, 64, 0.1
LR, MIN_LR, WARMUP = 2e-3, 1e-5, 200


def mnist(seed: int):
    """(train_x, train_y, val_x, val_y) as netcli's mnist dataset gives them (NCHW float32 in [0, 1])."""
    root = Path(os.environ.get("NETCLI_DATA") or Path.home() / ".cache" / "netcli").expanduser()
    with np.load(root / "mnist.npz") as a:
        x, y = a["train_x"], a["train_y"].astype(np.int64)
    perm = np.random.default_rng([seed, zlib.crc32(b"validation")]).permutation(len(x))
    n_val = int(round(len(x) * VAL_FRACTION))
    tr, va = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    images = lambda idx: torch.from_numpy((x[idx].astype(np.float32) / 255)[:, None])  # noqa: E731
    return images(tr), torch.from_numpy(y[tr]), images(va), torch.from_numpy(y[va])


def network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


def lr_at(step: int, total: int) -> float:
    """netcli's cosine schedule with linear warmup from 0 (torch's SequentialLR of LinearLR and CosineAnnealingLR)."""
    if step < WARMUP:
        return LR * step / WARMUP
    t_max = total - WARMUP
    return MIN_LR + (LR - MIN_LR) * (1 + math.cos(math.pi * min(step - WARMUP, t_max) / t_max)) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    train_x, train_y, val_x, val_y = mnist(SEED)
    net, loss_fn = network(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    n = len(train_x)
    steps_per_epoch = math.ceil(n / BATCH)
    total, step, best = steps_per_epoch * args.epochs, 0, -1.0
    data_rng = np.random.default_rng([SEED, 1])
    out_dir = tempfile.TemporaryDirectory(prefix="torch_mnist_cnn-")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.from_numpy(data_rng.permutation(n))
        net.train()
        loss_sum = hits = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * BATCH:(b + 1) * BATCH]
            xb, yb = train_x[idx], train_y[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total)
            opt.zero_grad()
            logits = net(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            hits += (logits.argmax(1) == yb).sum().item()
        net.eval()
        with torch.no_grad():
            val_hits = sum((net(val_x[i:i + BATCH]).argmax(1) == val_y[i:i + BATCH]).sum().item()
                           for i in range(0, len(val_x), BATCH))
        val_acc = val_hits / len(val_x)
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step}
        if val_acc > best:
            best = val_acc
            torch.save(state, Path(out_dir.name) / "best.pt")
        torch.save(state, Path(out_dir.name) / "last.pt")
    loop = time.perf_counter() - start
    out_dir.cleanup()
    print(json.dumps({"loop_s": round(loop, 3), "steps": step, "train_loss": loss_sum / n, "train_accuracy": hits / n,
                      "val_accuracy": val_acc, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
