#!/usr/bin/env python3
"""End-to-end check of the model CLI against a parity fixture (make_fixture.py output).

    python3 tests/reference/check_cli.py UNIREP_BINARY FIXTURE_DIR WORK_DIR

Runs `unirep predict` on the fixture's training weights and its deploy weights, `unirep reparam`
on the training weights followed by `predict --deploy`, and `convert_pytorch.py to-pytorch` of our
re-parameterised checkpoint loaded into the PyTorch reference; every path must reproduce the
fixture's eval logits (normwise relative error <= 1e-4).
"""
import os
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run(*cmd):
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main():
    unirep, fixture, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    with h5py.File(os.path.join(fixture, "io.h5"), "r") as f:
        variant = f.attrs["fixture_variant"]
        variant = variant.decode() if isinstance(variant, bytes) else variant
        classes = str(int(f.attrs["fixture_num_classes"]))
        ref_eval = f["logits_eval"][()].astype(np.float64)
        ref_deploy = f["logits_deploy"][()].astype(np.float64)
    io = os.path.join(fixture, "io.h5")
    failures = []

    def check(label, path, ref):
        with h5py.File(path, "r") as f:
            err = rel(f["logits"][()].astype(np.float64), ref)
        print("%-45s rel. error %.2e" % (label, err))
        if not err <= 1e-4:
            failures.append(label)

    out = os.path.join(work, "train_logits.h5")
    run(unirep, "predict", "--model", variant, "--num-classes", classes, "--device", "cpu",
        "--checkpoint", os.path.join(fixture, "weights.h5"), "--input", io, "--output", out)
    check("predict, training weights", out, ref_eval)

    out = os.path.join(work, "deploy_logits.h5")
    run(unirep, "predict", "--model", variant, "--deploy", "--num-classes", classes, "--device", "cpu",
        "--checkpoint", os.path.join(fixture, "deploy_weights.h5"), "--input", io, "--output", out)
    check("predict --deploy, PyTorch deploy weights", out, ref_deploy)

    ours = os.path.join(work, "reparam.h5")
    run(unirep, "reparam", os.path.join(fixture, "weights.h5"), ours)
    out = os.path.join(work, "reparam_logits.h5")
    run(unirep, "predict", "--model", variant, "--deploy", "--num-classes", classes, "--device", "cpu",
        "--checkpoint", ours, "--input", io, "--output", out)
    check("reparam + predict --deploy", out, ref_eval)

    # Our re-parameterised checkpoint loads strictly into the PyTorch reference's deploy model.
    pth = os.path.join(work, "reparam.pth")
    run(sys.executable, os.path.join(ROOT, "launch", "convert_pytorch.py"), "to-pytorch", ours, pth)
    import torch
    sys.path.insert(0, HERE)
    import unireplknet_ref as ref
    model = ref.unireplknet(variant, num_classes=int(classes), deploy=True)
    model.load_state_dict(torch.load(pth), strict=True)
    model.eval()
    with h5py.File(io, "r") as f:
        x = torch.from_numpy(f["input"][()])
    with torch.no_grad():
        y = model(x.to(next(model.parameters()).dtype)).double().numpy()
    err = rel(y, ref_eval)
    print("%-45s rel. error %.2e" % ("our reparam checkpoint in PyTorch", err))
    if not err <= 1e-4:
        failures.append("our reparam checkpoint in PyTorch")

    if failures:
        print("FAILED:", ", ".join(failures))
        return 1
    print("all CLI paths match the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
