#!/usr/bin/env python3
"""Write a parity fixture for the C++ implementation from the PyTorch reference model.

    python3 tests/reference/make_fixture.py --variant a --size 64 --batch 2 --seed 0 --out DIR \\
        [--dtype float32|float64] [--classes 1000] [--in-chans 3]

--size is H (square) or HxW (e.g. 48x80). The training-structure model gets random but meaningful
weights (unireplknet_ref.randomize_ with weight_std 0.02: conv/linear weights and biases N(0,0.02),
BN weight U(0.5,1.5), bias N(0,0.1), running_mean N(0,0.1), running_var U(0.5,1.5),
num_batches_tracked 7, GRN gamma/beta N(0,0.1), layer scale U(0.5,1.5), LayerNorm weight
U(0.5,1.5), bias N(0,0.1)); drop_path_rate is 0. Files written into DIR (created if needed):

  weights.h5          training-structure state dict (unirep-state-dict format, see
                      launch/convert_pytorch.py), as it was before any forward pass
  deploy_weights.h5   reparameterize(model) state dict (deploy structure)
  io.h5               same container format; datasets:
      input                          [N, C, H, W]  N(0, 1)
      logits_eval                    [N, classes]  eval-mode forward (BN running statistics)
      logits_deploy                  [N, classes]  eval forward of the re-parameterised model
      logits_train                   [N, classes]  train-mode forward (BN batch statistics)
      upstream                       [N, classes]  N(0, 1); loss = sum(logits_train * upstream)
      loss                           []            that loss
      grad.<parameter name>          d loss / d parameter, one per parameter (state-dict order)
      grad_input                     [N, C, H, W]  d loss / d input
      running_mean_after.<bn name>   BN running_mean after the one training forward
      running_var_after.<bn name>    BN running_var after it (momentum 0.1, unbiased variance)
    and file attributes describing the fixture (variant, size, batch, seed, dtype, ...).

Floating datasets have the fixture dtype. Everything is a deterministic function of the
arguments (numpy PCG64 streams seeded from --seed; the forward/backward runs on the CPU).
"""

import argparse
import importlib.util
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import unireplknet_ref as ref  # noqa: E402


def load_converter():
    path = os.path.join(ROOT, "launch", "convert_pytorch.py")
    spec = importlib.util.spec_from_file_location("convert_pytorch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_size(s):
    parts = s.lower().split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1:
        raise argparse.ArgumentTypeError("--size expects H or HxW, got %r" % s)
    return tuple(hw)


def normal(seed, stream, shape, dtype):
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))
    return torch.from_numpy(rng.standard_normal(size=shape)).to(dtype)


def make_fixture(variant, size, batch, seed, out, dtype=torch.float64, num_classes=1000,
                 in_chans=3):
    conv = load_converter()
    H, W = size
    os.makedirs(out, exist_ok=True)
    with ref.no_init():
        model = ref.unireplknet(variant, num_classes=num_classes, in_chans=in_chans,
                                drop_path_rate=0.0)
    model = model.to(dtype)
    ref.randomize_(model, seed=seed, weight_std=0.02)
    meta = {"fixture_variant": variant.lower(), "fixture_height": H, "fixture_width": W,
            "fixture_batch": batch, "fixture_seed": seed,
            "fixture_dtype": str(dtype).replace("torch.", ""), "fixture_num_classes": num_classes,
            "fixture_in_chans": in_chans, "fixture_torch_version": torch.__version__}

    conv.write_h5(os.path.join(out, "weights.h5"), model.state_dict(),
                  attrs=dict(meta, fixture_structure="train"))

    x = normal(seed, 1, (batch, in_chans, H, W), dtype)
    upstream = normal(seed, 2, (batch, num_classes), dtype)

    io = {"input": x.clone()}
    model.eval()
    with torch.no_grad():
        io["logits_eval"] = model(x)
        deploy = ref.reparameterize(model)
        io["logits_deploy"] = deploy(x)
    conv.write_h5(os.path.join(out, "deploy_weights.h5"), deploy.state_dict(),
                  attrs=dict(meta, fixture_structure="deploy"))
    del deploy

    model.train()
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    loss = (logits * upstream).sum()
    loss.backward()
    io["logits_train"] = logits.detach()
    io["upstream"] = upstream
    io["loss"] = loss.detach()
    for name, p in model.named_parameters():
        io["grad." + name] = p.grad.detach()
    io["grad_input"] = xg.grad.detach()
    bns = [(n, m) for n, m in model.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for n, m in bns:
        io["running_mean_after." + n] = m.running_mean.detach()
    for n, m in bns:
        io["running_var_after." + n] = m.running_var.detach()
    conv.write_h5(os.path.join(out, "io.h5"), io, attrs=dict(meta, fixture_structure="io"))
    return io


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a UniRepLKNet parity fixture "
                                 "(weights.h5, deploy_weights.h5, io.h5) into --out.")
    ap.add_argument("--variant", default="a", choices=ref.VARIANT_ORDER,
                    type=lambda s: s.lower())
    ap.add_argument("--size", default=(64, 64), type=parse_size, help="H or HxW (default 64)")
    ap.add_argument("--batch", default=2, type=int)
    ap.add_argument("--seed", default=0, type=int)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--classes", default=1000, type=int)
    ap.add_argument("--in-chans", default=3, type=int)
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    a = ap.parse_args(argv)
    if a.batch < 1 or a.classes < 1 or a.in_chans < 1:
        ap.error("--batch, --classes and --in-chans must be positive")
    t0 = time.time()
    io = make_fixture(a.variant, a.size, a.batch, a.seed, a.out,
                      dtype=getattr(torch, a.dtype), num_classes=a.classes, in_chans=a.in_chans)
    print("make_fixture: %s %dx%d batch %d seed %d %s -> %s (%d io datasets) in %.1f s"
          % (a.variant.upper(), a.size[0], a.size[1], a.batch, a.seed, a.dtype, a.out, len(io),
             time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
