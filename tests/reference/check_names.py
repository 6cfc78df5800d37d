#!/usr/bin/env python3
"""Check that the reference model's state dict equals the spec companion's enumeration.

For each of the nine variants and each structure (training, deploy, downstream/features), the
names, shapes, order and kind (parameter / buffer) of `unireplknet_ref` state-dict entries must
equal `unireplknet_shapes.py --list V [--deploy] [--downstream]`, and so must the parameter total.
The classifier is also checked with a 21841-class head. Exit status 0 when everything matches.

    python3 tests/reference/check_names.py            # all variants
    python3 tests/reference/check_names.py a t        # some variants

Weight initialisation is skipped while building (only names and shapes matter here) and the
untouched storage is never paged in, so all 45 models take a couple of seconds.
"""

import importlib.util
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import unireplknet_ref as ref  # noqa: E402


def load_shapes_module():
    spec = importlib.util.spec_from_file_location("unireplknet_shapes",
                                                  os.path.join(HERE, "unireplknet_shapes.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def expected_entries(shapes, variant, deploy, downstream, num_classes):
    t = shapes.Tally()
    shapes.build_backbone(t, variant.upper(), (224, 224), deploy=deploy, downstream=downstream,
                          num_classes=num_classes)
    return [(n, tuple(s), k) for n, s, k in t.entries], t.n_params()


def build_light(variant, **kw):
    """Build without spending time on weight init (only names/shapes matter here)."""
    with ref.no_init():
        return ref.unireplknet(variant, **kw)


def actual_entries(model):
    params = {id(p) for p in model.parameters()}
    out = []
    for name, t in model.state_dict(keep_vars=True).items():
        out.append((name, tuple(t.shape), "param" if id(t) in params else "buffer"))
    n_params = sum(p.numel() for p in model.parameters())
    return out, n_params


def compare(label, got, want):
    if got == want:
        return []
    errs = []
    gn, wn = [g[0] for g in got], [w[0] for w in want]
    missing = [n for n in wn if n not in set(gn)]
    extra = [n for n in gn if n not in set(wn)]
    if missing:
        errs.append("%s: missing %d entries, e.g. %s" % (label, len(missing), missing[:5]))
    if extra:
        errs.append("%s: unexpected %d entries, e.g. %s" % (label, len(extra), extra[:5]))
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            errs.append("%s: first difference at entry %d: got %s, want %s" % (label, i, g, w))
            break
    if len(got) != len(want):
        errs.append("%s: %d entries, want %d" % (label, len(got), len(want)))
    return errs


def main(argv):
    variants = [v.lower() for v in argv] or ref.VARIANT_ORDER
    shapes = load_shapes_module()
    structures = [
        ("train", dict(deploy=False, features=False), dict(deploy=False, downstream=False)),
        ("deploy", dict(deploy=True, features=False), dict(deploy=True, downstream=False)),
        ("downstream", dict(deploy=False, features=True), dict(deploy=False, downstream=True)),
        ("downstream+deploy", dict(deploy=True, features=True), dict(deploy=True, downstream=True)),
    ]
    errors = []
    t0 = time.time()
    for v in variants:
        for label, kw, skw in structures:
            for classes in ((1000, 21841) if label == "train" else (1000,)):
                model = build_light(v, num_classes=classes, **kw)
                got, got_n = actual_entries(model)
                want, want_n = expected_entries(shapes, v, skw["deploy"], skw["downstream"],
                                                classes)
                tag = "%s %s%s" % (v.upper(), label, "" if classes == 1000 else " (%d classes)"
                                   % classes)
                errs = compare(tag, got, want)
                if got_n != want_n:
                    errs.append("%s: %d parameters, want %d" % (tag, got_n, want_n))
                errors += errs
                print("%-32s %5d entries %12d params  %s" % (tag, len(got), got_n,
                                                             "ok" if not errs else "MISMATCH"))
                del model
    for e in errors:
        print("ERROR " + e)
    print("check_names: %s in %.1f s" % ("FAILED" if errors else "all match", time.time() - t0))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
