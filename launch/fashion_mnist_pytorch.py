#!/usr/bin/env python3
"""Fashion-MNIST epochs of UniRepLKNet-A in PyTorch eager mode, data loading included: the baseline for
issue 7's small-model target (the quickstart's GPU epoch against an eager PyTorch epoch, side by side).

It trains what experiments/fashion_mnist/unireplknet_a.yaml trains, with the tools an upstream-style
PyTorch script uses:
  model   the from-spec reference UniRepLKNet-A (tests/reference/unireplknet_ref.py), in_chans 1,
          10 classes, channels_last
  data    the IDX files of Debian's dataset-fashion-mnist (or any folder holding them); a
          torch.utils.data.DataLoader with --workers processes, shuffling, pinned memory; per image
          in the worker: the 28x28 digit centred on a 32x32 canvas, shifted by up to 2 px, flipped
          with probability 1/2, normalised by the training set's mean and std (the config's "small"
          pipeline)
  step    label-smoothed (0.1) cross-entropy, AdamW 2e-3 with weight decay 0.05 off 1-D tensors and
          biases, --dtype bf16/f16 autocast or f32
Each epoch's wall time (loader included), its img/s and the final train loss are printed as one JSON
object per epoch. The matching run of ours:
    build/unirep train --config experiments/fashion_mnist/unireplknet_a.yaml --set train.epochs=E \\
        --set data.path=SHARDS --set train.device=cuda --out runs/side_by_side
whose metrics.jsonl and result.json carry the same figures.

The real numbers come from the GPU machine (/opt/torch/.venv/bin/python); on this CPU it is a smoke
test (--limit keeps a few hundred images).
"""

import argparse
import contextlib
import gzip
import json
import os
import struct
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import unireplknet_ref as ref  # noqa: E402

MEAN, STD = 0.2860, 0.3530  # the training set's pixel mean and std of x / 255, as the config
CANVAS, SHIFT = 32, 2
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}


def read_idx(path):
    """An IDX file (optionally gzipped) as a uint8 tensor of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit("fashion_mnist_pytorch.py: %s is not an IDX file of unsigned bytes" % path)
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def find_split(folder, prefix):
    for name in (prefix + "-ubyte.gz", prefix + "-ubyte"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    sys.exit("fashion_mnist_pytorch.py: no %s-ubyte[.gz] in %s" % (prefix, folder))


class ShiftedFashionMnist(torch.utils.data.Dataset):
    """28x28 digits centred on a 32x32 canvas, randomly shifted and flipped, normalised."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        canvas = torch.zeros(CANVAS, CANVAS)
        dy, dx = torch.randint(-SHIFT, SHIFT + 1, (2,)).tolist()
        top, left = (CANVAS - 28) // 2 + dy, (CANVAS - 28) // 2 + dx
        image = self.images[i].float() / 255
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        canvas[top:top + 28, left:left + 28] = image
        return ((canvas - MEAN) / STD).unsqueeze(0), int(self.labels[i])


def decay_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.environ.get("UNIREP_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"),
                   help="folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke test)")
    args = p.parse_args()
    if args.epochs < 1 or args.batch < 1 or args.workers < 0 or args.limit < 0:
        p.error("--epochs and --batch must be positive, --workers and --limit non-negative")

    device = torch.device(args.device)
    images = read_idx(find_split(args.data, "train-images-idx3"))
    labels = read_idx(find_split(args.data, "train-labels-idx1"))
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    loader = torch.utils.data.DataLoader(ShiftedFashionMnist(images, labels), batch_size=args.batch, shuffle=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda", drop_last=True,
                                         persistent_workers=args.workers > 0)

    torch.manual_seed(0)
    model = ref.unireplknet("a", in_chans=1, num_classes=10).to(device).to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(decay_groups(model, 0.05), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    use_scaler = args.dtype == "f16" and device.type == "cuda"
    scaler = torch.cuda.amp.GradScaler(enabled=use_scaler) if device.type == "cuda" else None

    for epoch in range(args.epochs):
        start = time.perf_counter()
        seen, loss_sum = 0, torch.zeros((), device=device)
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            context = (torch.autocast(device_type=device.type, dtype=DTYPES[args.dtype]) if args.dtype != "f32"
                       else contextlib.nullcontext())
            with context:
                loss = loss_fn(model(x).float(), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            seen += x.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        steps = max(seen // args.batch, 1)
        print(json.dumps({"impl": "pytorch-eager", "epoch": epoch, "seconds": seconds, "img_per_s": seen / seconds,
                          "train_loss": float(loss_sum) / steps, "images": seen, "batch": args.batch,
                          "workers": args.workers, "dtype": args.dtype, "device": str(device),
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
