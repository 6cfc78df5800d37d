#!/usr/bin/env python3
"""PyTorch side of launch/bench_vs_pytorch.sh: times the from-spec PyTorch UniRepLKNet
(tests/reference/unireplknet_ref.py) on the shapes `unirep bench` times, and prints the comparison.

The real numbers come from the GPU machine (PyTorch 2.x with CUDA: /opt/torch/.venv/bin/python);
on a CPU (Debian's torch 1.13 here) it only runs as a smoke test with tiny shapes.

Parts (--part), each printing one JSON object per measurement on stdout:
  eager    train step (autocast, channels_last, label-smoothed cross-entropy, AdamW with the
           trainer's decay groups, zero_grad) and eval forward under no_grad, the latter also in the
           deploy structure (reparameterize), for --models (train) and --infer-models (infer)
  compile  the same train step with torch.compile(model) (PyTorch 2 only; compiling T takes 1-2 min
           on an H100, inside the warm-up)
  kernels  torch.nn.functional.conv2d depthwise (groups = C), channels_last, forward and
           forward + backward, at the shapes one variant's blocks use (every stage's kernels and
           dilated branches), printing a Markdown table: ms, TFLOP/s and GB/s of the minimum traffic
--table FILE turns a file of such JSON lines plus `unirep bench --json` lines into a Markdown table
with the ratios ours / eager and ours / compile.

Timing as `unirep bench`: --warmup steps, synchronize, reset the peak-memory counter, --steps steps,
synchronize; img/s = batch * steps / elapsed; peak = torch.cuda.max_memory_allocated over the timed
steps. The reference model favours clarity over speed (channels-first LayerNorm written out, permutes
around the pointwise linears, one BatchNorm per DRB branch), as the official code does.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import unireplknet_ref as ref  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
NUM_CLASSES = 1000
# The trainer's defaults (launch/config.h).
LR, WEIGHT_DECAY, BETAS, EPS, LABEL_SMOOTHING = 4e-3, 0.05, (0.9, 0.999), 1e-8, 0.1


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device):
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def decay_groups(model):
    """No weight decay for 1-D tensors and biases (optim/param_groups.h, upstream optim_factory)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def autocast(device, dtype):
    if dtype == "f32":
        return contextlib.nullcontext()  # torch 1.13's CPU autocast rejects float32 even when disabled
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def grad_scaler(enabled):
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):  # torch >= 2.3; the cuda.amp one is deprecated
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def timed(step, args, device):
    """Runs step() warmup times, then steps times between two synchronisations."""
    for _ in range(args.warmup):
        step()
    synchronize(device)
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"img_per_s": args.batch * args.steps / seconds, "ms_per_step": 1e3 * seconds / args.steps,
            "peak_mem_bytes": peak_bytes(device)}


def synthetic_batch(args, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (args.batch,), generator=gen)
    return x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)


def record(args, device, impl, model, mode, deploy, result):
    out = {"impl": impl, "model": model, "mode": mode, "deploy": deploy, "dtype": args.dtype,
           "batch": args.batch, "image_size": args.image_size, "steps": args.steps, "warmup": args.warmup,
           "world_size": 1, "device": str(device), "torch": torch.__version__}
    out.update(result)
    print(json.dumps(out), flush=True)


def bench_train(args, device, variant, compiled):
    torch.manual_seed(0)
    model = ref.unireplknet(variant, num_classes=NUM_CLASSES).to(device).to(memory_format=torch.channels_last)
    model.train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(decay_groups(model), lr=LR, betas=BETAS, eps=EPS)
    scaler = grad_scaler(enabled=args.dtype == "f16" and device.type == "cuda")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    x, y = synthetic_batch(args, device)

    def step():
        with autocast(device, args.dtype):
            loss = loss_fn(forward(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    result = timed(step, args, device)
    del model, forward, optimizer, x, y
    free_memory(device)
    return result


def bench_infer(args, device, variant, deploy):
    torch.manual_seed(0)
    model = ref.unireplknet(variant, num_classes=NUM_CLASSES).to(device).eval()
    if deploy:
        model = ref.reparameterize(model)
    model = model.to(memory_format=torch.channels_last)
    x, _ = synthetic_batch(args, device)

    def step():
        with torch.no_grad(), autocast(device, args.dtype):
            model(x)

    result = timed(step, args, device)
    del model, x
    free_memory(device)
    return result


def part_eager(args, device):
    for variant in args.models:
        record(args, device, "eager", variant, "train", False, bench_train(args, device, variant, False))
    for variant in args.infer_models:
        for deploy in (False, True):
            record(args, device, "eager", variant, "infer", deploy, bench_infer(args, device, variant, deploy))


def part_compile(args, device):
    if not hasattr(torch, "compile"):
        sys.exit("bench_pytorch.py --part compile: torch.compile needs PyTorch 2, this is %s" % torch.__version__)
    for variant in args.models:
        start = time.perf_counter()
        result = bench_train(args, device, variant, True)
        result["seconds_with_compile"] = time.perf_counter() - start
        record(args, device, "compile", variant, "train", False, result)


def depthwise_shapes(variant, image_size):
    """(C, H, W, k, dilation, blocks): every depthwise conv of the variant's training structure."""
    depths, dims = ref.VARIANTS[variant]
    shapes = {}
    size = math.ceil(image_size / 4)  # the stem: two stride-2 convs
    for stage in range(4):
        if stage > 0:
            size = math.ceil(size / 2)
        for kernel in ref.default_kernel_sizes(depths)[stage]:
            convs = [(kernel, 1)] + (list(ref.DRB_BRANCHES[kernel]) if kernel >= 7 else [])
            for k, r in convs:
                key = (dims[stage], size, size, k, r)
                shapes[key] = shapes.get(key, 0) + 1
    return [key + (blocks,) for key, blocks in shapes.items()]


def part_kernels(args, device):
    dtype = DTYPES[args.dtype]
    variant = args.models[0]
    print("depthwise conv2d (groups = C), %s channels_last, batch %d, UniRepLKNet-%s at %d (%s, torch %s)\n"
          % (args.dtype, args.batch, variant, args.image_size, device, torch.__version__))
    print("| C | H x W | k | dilation | blocks | fwd ms | fwd TFLOP/s | fwd GB/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
          " fwd+bwd GB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    for c, h, w, k, r, blocks in depthwise_shapes(variant, args.image_size):
        x = torch.randn(args.batch, c, h, w, generator=gen).to(device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        weight = (0.02 * torch.randn(c, 1, k, k, generator=gen)).to(device=device, dtype=dtype).requires_grad_()
        grad_out = torch.randn_like(x)
        pad = (r * (k - 1) + 1) // 2

        def forward():
            with torch.no_grad():
                F.conv2d(x, weight, None, 1, pad, r, c)

        def forward_backward():
            x.grad, weight.grad = None, None
            F.conv2d(x, weight, None, 1, pad, r, c).backward(grad_out)

        # Multiply-adds of the forward; backward is a data-gradient and a weight-gradient conv of
        # the same size. Minimum traffic: forward reads x and writes y; backward also reads dy
        # and x and writes dx (the weights are negligible).
        flops = 2.0 * args.batch * c * h * w * k * k
        activation = args.batch * c * h * w * x.element_size()
        fwd = timed(forward, args, device)["ms_per_step"]
        both = timed(forward_backward, args, device)["ms_per_step"]
        print("| %d | %dx%d | %d | %d | %d | %.3f | %.2f | %.0f | %.3f | %.2f | %.0f |"
              % (c, h, w, k, r, blocks, fwd, flops / fwd / 1e9, 2 * activation / fwd / 1e6, both,
                 3 * flops / both / 1e9, 5 * activation / both / 1e6), flush=True)
        del x, weight, grad_out
    free_memory(device)


def key_of(r):
    return (r["mode"], r["model"], bool(r.get("deploy", False)), r["dtype"], r["batch"], r["image_size"])


def table(path):
    best = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r.get("world_size", 1) != 1:
                continue
            best[key_of(r) + (r.get("impl", "ours"),)] = r
    keys = sorted({k[:-1] for k in best}, key=lambda k: (k[0] != "train", k[1], k[2]))

    def cell(k, impl, field, scale=1.0, fmt="%.1f"):
        r = best.get(k + (impl,))
        return fmt % (r[field] / scale) if r and r.get(field) is not None else "-"

    def ratio(k, other):
        a, b = best.get(k + ("ours",)), best.get(k + (other,))
        return "%.2f" % (a["img_per_s"] / b["img_per_s"]) if a and b else "-"

    print("| mode | model | dtype | batch | size | ours img/s | eager img/s | compile img/s | ours / eager |"
          " ours / compile | ours peak GiB | eager peak GiB | compile peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    gib = float(1 << 30)
    for k in keys:
        mode, model, deploy, dtype, batch, size = k
        print("| %s | %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |"
              % (mode + (" (deploy)" if deploy else ""), model, dtype, batch, size, cell(k, "ours", "img_per_s"),
                 cell(k, "eager", "img_per_s"), cell(k, "compile", "img_per_s"), ratio(k, "eager"),
                 ratio(k, "compile"), cell(k, "ours", "peak_mem_bytes", gib, "%.2f"),
                 cell(k, "eager", "peak_mem_bytes", gib, "%.2f"), cell(k, "compile", "peak_mem_bytes", gib, "%.2f")))


def variants(text):
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    for v in names:
        if v not in ref.VARIANTS:
            raise argparse.ArgumentTypeError("unknown variant %r (known: %s)" % (v, ", ".join(ref.VARIANT_ORDER)))
    return names


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be positive, got %s" % text)
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["eager", "compile", "kernels"])
    p.add_argument("--table", metavar="FILE", help="print the Markdown comparison of FILE's JSON lines")
    p.add_argument("--models", type=variants, default=["t"], help="train (and kernel) variants, comma-separated")
    p.add_argument("--infer-models", type=variants, default=["t", "a", "s"], help="infer variants")
    p.add_argument("--batch", type=positive, default=128)
    p.add_argument("--image-size", type=positive, default=224)
    p.add_argument("--steps", type=positive, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    if args.table:
        table(args.table)
        return
    if not args.part:
        p.error("give --part eager|compile|kernels or --table FILE")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_pytorch.py: --device cuda but torch %s sees no GPU (use --device cpu for a smoke test)"
                 % torch.__version__)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    {"eager": part_eager, "compile": part_compile, "kernels": part_kernels}[args.part](args, device)


if __name__ == "__main__":
    main()
