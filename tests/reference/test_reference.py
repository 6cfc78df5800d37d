#!/usr/bin/env python3
"""Tests of the PyTorch reference model (unireplknet_ref.py) and of make_fixture.py.

    python3 tests/reference/test_reference.py [-v]

* §5 re-parameterisation of whole A and T models (eval mode, randomised BN statistics and affine
  parameters, GRN gamma/beta, O(1) layer scales) at 64x64: relative error < 1e-12 in float64 and
  < 1e-5 in float32; every DRB kernel size 5..17, SmaK 3/5 and the K = 0 block in float64.
* building blocks against independent formulas of §2 (channels-first LayerNorm, GRN, SE, DRB
  branch geometry), §2.9 drop-path schedule and semantics, §4 initialisation, feature mode.
* a float64 fixture: files reload strictly and reproduce the stored outputs; the stored running
  statistics follow the BN update rule.
"""

import importlib.util
import math
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import make_fixture  # noqa: E402
import unireplknet_ref as ref  # noqa: E402

D64 = torch.float64


def small_model(kernel_sizes, deploy=False, **kw):
    with ref.no_init():
        return ref.UniRepLKNet(depths=[len(k) for k in kernel_sizes], dims=(8, 16, 16, 32),
                               kernel_sizes=kernel_sizes, deploy=deploy, num_classes=5, **kw)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


class ReparamTest(unittest.TestCase):
    def test_whole_models_a_and_t(self):
        for v in ("a", "t"):
            for dtype, lim in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
                rel_max, rel_sum = ref.reparam_error(v, dtype, size=64)
                self.assertLess(rel_max, lim, "%s %s" % (v, dtype))
                self.assertLess(rel_sum, lim, "%s %s" % (v, dtype))

    def test_every_kernel_size(self):
        for ks in ([[3], [5], [7], [9]], [[11], [13], [15], [17]], [[0], [3], [0], [13]]):
            for features in (False, True):
                m = small_model(ks, features=features).to(D64)
                ref.randomize_(m, seed=1, weight_std="fan_in")
                m.eval()
                d = ref.reparameterize(m)
                self.assertTrue(d.deploy and not d.training)
                # deploy-constructed model has the same names and shapes
                fresh = small_model(ks, deploy=True, features=features)
                self.assertEqual([(k, v.shape) for k, v in fresh.state_dict().items()],
                                 [(k, v.shape) for k, v in d.state_dict().items()])
                x = torch.randn(2, 3, 45, 38, dtype=D64)
                with torch.no_grad():
                    y, yd = m(x), d(x)
                if features:
                    for a, b in zip(yd, y):
                        self.assertLess(rel_err(a, b), 1e-12, ks)
                else:
                    self.assertLess(rel_err(yd, y), 1e-12, ks)

    def test_original_model_untouched(self):
        m = small_model([[3], [13], [3], [13]]).to(D64)
        ref.randomize_(m, seed=2)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        ref.reparameterize(m.eval())
        for k, v in m.state_dict().items():
            self.assertTrue(torch.equal(v, before[k]), k)
        self.assertFalse(m.deploy)


class BuildingBlockTest(unittest.TestCase):
    def test_layernorm_channels_first(self):
        ln = ref.LayerNormChannelsFirst(6).to(D64)
        with torch.no_grad():
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_()
        x = torch.randn(2, 6, 5, 4, dtype=D64) * 3 + 1
        want = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=1e-6)
        self.assertLess(rel_err(ln(x), want.permute(0, 3, 1, 2)), 1e-14)

    def test_grn_formula(self):
        g = ref.GRN(5).to(D64)
        with torch.no_grad():
            g.gamma.normal_()
            g.beta.normal_()
        z = torch.randn(2, 3, 4, 5, dtype=D64)
        zn, gam, bet = z.numpy(), g.gamma.detach().numpy().ravel(), g.beta.detach().numpy().ravel()
        want = np.empty_like(zn)
        for n in range(2):
            G = [math.sqrt(sum(zn[n, h, w, f] ** 2 for h in range(3) for w in range(4)))
                 for f in range(5)]
            mean = sum(G) / 5
            for f in range(5):
                nx = G[f] / (mean + 1e-6)
                want[n, :, :, f] = (gam[f] * nx + 1) * zn[n, :, :, f] + bet[f]
        self.assertLess(np.abs(g(z).detach().numpy() - want).max(), 1e-13)
        # an all-zero channel (G = 0) has a finite gradient (taken as 0 through G)
        z = z.clone()
        z[0, :, :, 2] = 0
        z.requires_grad_(True)
        g(z).sum().backward()
        self.assertTrue(torch.isfinite(z.grad).all())

    def test_se_formula(self):
        se = ref.SE(8, 2).to(D64)
        u = torch.randn(2, 8, 3, 5, dtype=D64)
        s = u.mean(dim=(2, 3))
        t = torch.relu(s @ se.down.weight[:, :, 0, 0].t() + se.down.bias)
        gate = torch.sigmoid(t @ se.up.weight[:, :, 0, 0].t() + se.up.bias)
        self.assertLess(rel_err(se(u), u * gate[:, :, None, None]), 1e-14)

    def test_drb_branch_geometry(self):
        for K, branches in ref.DRB_BRANCHES.items():
            drb = ref.DilatedReparamBlock(4, K)
            self.assertEqual(drb.lk_origin.padding, (K // 2, K // 2))
            self.assertIsNone(drb.lk_origin.bias)
            for k, r in branches:
                c = getattr(drb, "dil_conv_k%d_%d" % (k, r))
                self.assertEqual((c.kernel_size, c.dilation, c.groups), ((k, k), (r, r), 4))
                self.assertEqual(c.padding[0], (r * (k - 1) + 1) // 2)
                self.assertIsNone(c.bias)
        with self.assertRaises(ValueError):
            ref.DilatedReparamBlock(4, 19)

    def test_dilated_to_dense(self):
        w = torch.randn(3, 1, 3, 3, dtype=D64)
        x = torch.randn(1, 3, 11, 11, dtype=D64)
        dense = ref.dilated_to_dense(w, 3)
        self.assertEqual(dense.shape[-1], 7)
        a = F.conv2d(x, w, padding=3, dilation=3, groups=3)
        b = F.conv2d(x, dense, padding=3, groups=3)
        self.assertLess(rel_err(a, b), 1e-14)

    def test_drop_path(self):
        rates = ref.drop_path_rates((3, 3, 27, 3), 0.4)
        self.assertEqual(rates[0], 0.0)
        self.assertEqual(rates[-1], 0.4)
        self.assertAlmostEqual(rates[1], 0.4 / 35)
        m = small_model([[3, 3], [13], [3], [13]], drop_path_rate=0.3)
        blocks = [b for s in m.stages for b in s]
        self.assertIsInstance(blocks[0].drop_path, nn.Identity)
        self.assertAlmostEqual(blocks[-1].drop_path.rate, 0.3)
        dp = ref.DropPath(0.25).train()
        torch.manual_seed(0)
        v = torch.ones(4000, 2, 3, 3, dtype=D64)
        out = dp(v)
        per_sample = out.reshape(4000, -1)
        self.assertTrue(((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all())
        self.assertAlmostEqual((per_sample[:, 0] == 0).double().mean().item(), 0.25, delta=0.03)
        self.assertTrue(torch.equal(dp.eval()(v), v))

    def test_kernel_tables(self):
        t = ref.unireplknet("t").kernel_sizes
        self.assertEqual(t[0], [3, 3, 3])
        self.assertEqual(t[2][:4], [13, 3, 13, 3])
        s = ref.default_kernel_sizes((3, 3, 27, 3))
        self.assertEqual(s[2][:6], [13, 3, 3, 13, 3, 3])
        with self.assertRaises(ValueError):
            ref.UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 16, 32))


class InitAndModesTest(unittest.TestCase):
    def test_classifier_init(self):
        torch.manual_seed(0)
        m = ref.unireplknet("a", head_init_scale=0.5)
        ws = torch.cat([mod.weight.reshape(-1) for mod in m.modules()
                        if isinstance(mod, (nn.Conv2d, nn.Linear)) and mod is not m.head])
        self.assertAlmostEqual(ws.std().item(), 0.02, delta=0.0005)
        self.assertAlmostEqual(m.head.weight.std().item(), 0.01, delta=0.0005)
        for mod in m.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
                self.assertEqual(mod.bias.abs().max().item(), 0.0)
        sd = m.state_dict()
        self.assertTrue(torch.all(sd["stages.0.0.gamma"] == 1e-6))
        self.assertTrue(torch.all(sd["stages.1.0.act.1.gamma"] == 0))
        self.assertTrue(torch.all(sd["stages.1.0.act.1.beta"] == 0))
        self.assertTrue(torch.all(sd["stages.1.0.dwconv.origin_bn.running_var"] == 1))
        self.assertTrue(torch.all(sd["downsample_layers.0.1.weight"] == 1))
        self.assertTrue(torch.all(sd["norm.weight"] == 1))
        no_ls = ref.unireplknet("a", layer_scale_init_value=None)
        self.assertNotIn("stages.0.0.gamma", no_ls.state_dict())

    def test_feature_mode(self):
        with ref.no_init():
            m = ref.unireplknet("a", features=True)
        ref.randomize_(m, seed=0)
        m.eval()
        x = torch.randn(1, 3, 70, 50)
        with torch.no_grad():
            outs = m(x)
        # ceil-halving: 70x50 -> 35x25 -> 18x13 (stage 0) -> 9x7 -> 5x4 -> 3x2
        self.assertEqual([tuple(o.shape) for o in outs],
                         [(1, 40, 18, 13), (1, 80, 9, 7), (1, 160, 5, 4), (1, 320, 3, 2)])
        # out_i = norm_i(stage i output); the un-normalised map feeds the next stage
        with torch.no_grad():
            h = m.stages[0](m.downsample_layers[0](x))
            self.assertTrue(torch.equal(outs[0], m.norm0(h)))
            h = m.stages[1](m.downsample_layers[1](h))
            self.assertTrue(torch.equal(outs[1], m.norm1(h)))

    def test_in_chans_and_classes(self):
        m = ref.unireplknet("a", in_chans=1, num_classes=10)
        self.assertEqual(tuple(m(torch.randn(2, 1, 32, 32)).shape), (2, 10))


class FixtureTest(unittest.TestCase):
    def test_fixture_float64(self):
        with tempfile.TemporaryDirectory() as out:
            make_fixture.make_fixture("a", (40, 56), 3, 5, out, dtype=D64, num_classes=7)
            conv = make_fixture.load_converter()
            w = conv.read_h5(os.path.join(out, "weights.h5"))
            wd = conv.read_h5(os.path.join(out, "deploy_weights.h5"))
            io = conv.read_h5(os.path.join(out, "io.h5"))
            with h5py.File(os.path.join(out, "io.h5"), "r") as f:
                self.assertEqual(f.attrs["fixture_variant"], "a")
                self.assertEqual(f.attrs["fixture_dtype"], "float64")
        with ref.no_init():
            m = ref.unireplknet("a", num_classes=7)
            md = ref.unireplknet("a", num_classes=7, deploy=True)
        m = m.to(D64)
        md = md.to(D64)
        m.load_state_dict(w, strict=True)
        md.load_state_dict(wd, strict=True)
        self.assertEqual(w["stages.0.0.norm.num_batches_tracked"].item(), 7)
        x = io["input"]
        self.assertEqual(tuple(x.shape), (3, 3, 40, 56))
        self.assertEqual(x.dtype, D64)
        with torch.no_grad():
            self.assertTrue(torch.equal(m.eval()(x), io["logits_eval"]))
            self.assertTrue(torch.equal(md.eval()(x), io["logits_deploy"]))
        self.assertLess(rel_err(io["logits_deploy"], io["logits_eval"]), 1e-12)
        # gradients: one per parameter, in state-dict order
        grads = [k[5:] for k in io if k.startswith("grad.")]
        self.assertEqual(grads, [n for n, _ in m.named_parameters()])
        # train forward + BN running-statistics update rule (momentum 0.1, unbiased variance)
        seen = {}
        hooks = [mod.register_forward_hook(
                 lambda mod, inp, outp, name=name: seen.__setitem__(name, inp[0].detach()))
                 for name, mod in m.named_modules() if isinstance(mod, nn.BatchNorm2d)]
        m.train()
        xg = x.clone().requires_grad_(True)
        logits = m(xg)
        for h in hooks:
            h.remove()
        self.assertTrue(torch.equal(logits, io["logits_train"]))
        (logits * io["upstream"]).sum().backward()
        self.assertTrue(torch.equal(xg.grad, io["grad_input"]))
        self.assertEqual(len(seen), 84)           # BatchNorms of A
        for name, inp in seen.items():
            mean = inp.mean(dim=(0, 2, 3))
            var = inp.var(dim=(0, 2, 3), unbiased=True)
            rm = 0.9 * w[name + ".running_mean"] + 0.1 * mean
            rv = 0.9 * w[name + ".running_var"] + 0.1 * var
            self.assertLess((rm - io["running_mean_after." + name]).abs().max().item(), 1e-12)
            self.assertLess((rv - io["running_var_after." + name]).abs().max().item(), 1e-12)


if __name__ == "__main__":
    unittest.main()
