#!/usr/bin/env python3
"""PNG curves of a training run: `unirep plot RUN_DIR` runs this script on RUN_DIR/metrics.jsonl.

The log holds one JSON object per line (launch/metrics.h): "step" records (loss, lr, img_per_s per optimizer
step) and "epoch" records (train_loss, top1/top5, ema_top1/ema_top5, eval_loss). Writes into OUT (default
RUN_DIR/plots): loss.png (per-step loss, its moving average, the epochs' train and eval loss), lr.png (per-step learning
rate), accuracy.png (top-1/top-5 per epoch, EMA model dashed). null values (NaN in the run) are gaps.

Exit codes: 0 written, 1 bad input (no log, no records), 2 usage, 3 matplotlib is not installed.
"""
import argparse
import json
import math
import os
import sys

NO_MATPLOTLIB = 3


def fail(message, code=1):
    print(f"plot: {message}", file=sys.stderr)
    sys.exit(code)


def read_records(path):
    """The records of the log in step order, the last of each (kind, epoch, step) winning: a resumed run whose
    log was not cut back repeats steps, and the later record belongs to the run that went on."""
    if not os.path.isfile(path):
        fail(f"'{path}' does not exist (a training run writes its metrics there)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    torn = lines.pop()  # what follows the last newline: empty, or a line a killed run did not finish
    if torn.strip():
        print(f"plot: ignoring the unfinished last line of '{path}'", file=sys.stderr)
    latest = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            print(f"plot: skipping line {number} of '{path}': not JSON ({e.msg})", file=sys.stderr)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            print(f"plot: skipping line {number} of '{path}': not a record with an integer \"step\"",
                  file=sys.stderr)
            continue
        latest[(record.get("kind"), record.get("epoch"), record["step"])] = record
    if not latest:
        fail(f"'{path}' holds no records")
    return sorted(latest.values(), key=lambda r: r["step"])


def series(records, kind, x_key, y_key):
    """(x, y) of the records of `kind` that have `y_key`; null (a NaN in the run) becomes NaN, a gap."""
    xs, ys = [], []
    for r in records:
        if r.get("kind") == kind and y_key in r and x_key in r:
            xs.append(r[x_key])
            ys.append(math.nan if r[y_key] is None else float(r[y_key]))
    return xs, ys


def moving_average(xs, ys, window):
    """Trailing mean over `window` points, placed at the window's last x; NaNs are left out of the mean."""
    import numpy as np  # comes with matplotlib
    if window < 2 or len(ys) < window:
        return [], []
    y = np.asarray(ys, dtype=float)
    finite = np.isfinite(y)
    kernel = np.ones(window)
    sums = np.convolve(np.where(finite, y, 0.0), kernel, mode="valid")
    counts = np.convolve(finite.astype(float), kernel, mode="valid")
    return xs[window - 1:], np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def no_data(ax, what):
    ax.text(0.5, 0.5, f"no {what} in the log", ha="center", va="center", transform=ax.transAxes)


def plot_loss(plt, records, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    steps, losses = series(records, "step", "step", "loss")
    if steps:
        ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss per step")
        window = max(2, min(200, len(steps) // 20))
        ms, ma = moving_average(steps, losses, window)
        if len(ms):
            ax.plot(ms, ma, color="tab:blue", linewidth=1.6, label=f"moving average ({window} steps)")
    for key, label, color in (("train_loss", "epoch train loss", "tab:green"),
                              ("eval_loss", "epoch eval loss", "tab:red")):
        es, el = series(records, "epoch", "step", key)
        if es:
            ax.plot(es, el, marker="o", color=color, label=label)
    if ax.lines:
        ax.legend()
    else:
        no_data(ax, "loss")
    ax.set(xlabel="step", ylabel="loss", title="loss")
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_lr(plt, records, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    steps, lrs = series(records, "step", "step", "lr")
    if steps:
        ax.plot(steps, lrs, color="tab:purple")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        no_data(ax, "learning rate")
    ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_accuracy(plt, records, path):
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label, color, style in (("top1", "top-1", "tab:blue", "-"), ("top5", "top-5", "tab:orange", "-"),
                                     ("ema_top1", "EMA top-1", "tab:blue", "--"),
                                     ("ema_top5", "EMA top-5", "tab:orange", "--")):
        epochs, values = series(records, "epoch", "epoch", key)
        if epochs:
            ax.plot(epochs, values, linestyle=style, marker="o", color=color, label=label)
    if ax.lines:
        ax.legend()
    else:
        no_data(ax, "accuracy")
    ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    save(fig, path)


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description="PNG curves (loss, lr, accuracy) of a run's metrics.jsonl")
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="folder for the PNGs (default RUN_DIR/plots)")
    args = parser.parse_args()
    if not os.path.isdir(args.run_dir):
        fail(f"run folder '{args.run_dir}' does not exist")
    records = read_records(os.path.join(args.run_dir, "metrics.jsonl"))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("python3-matplotlib is not installed: apt-get install python3-matplotlib, or pip install matplotlib",
             NO_MATPLOTLIB)
    out = args.out or os.path.join(args.run_dir, "plots")
    os.makedirs(out, exist_ok=True)
    for name, draw in (("loss", plot_loss), ("lr", plot_lr), ("accuracy", plot_accuracy)):
        path = os.path.join(out, f"{name}.png")
        draw(plt, records, path)
        plt.close("all")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
