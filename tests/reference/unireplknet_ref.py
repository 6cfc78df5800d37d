#!/usr/bin/env python3
"""PyTorch reference implementation of UniRepLKNet, written from the spec (unireplknet.md).

This is the ground truth the C++/CUDA implementation is compared with (tests/reference/README.md).
It favours clarity over speed and runs on PyTorch 1.13 and 2.x (CPU or CUDA, float32 or float64).

    from unireplknet_ref import unireplknet, reparameterize
    model = unireplknet("a")                          # training structure, classifier, 1000 classes
    model = unireplknet("t", deploy=True)             # re-parameterised (inference) structure
    model = unireplknet("s", features=True)           # backbone: returns [norm0(s0), ..., norm3(s3)]
    fast = reparameterize(model.eval())               # new deploy-structure model, same outputs in eval

Spec sections: §1 variants, §2 forward, §3 state-dict names, §4 init, §5 re-parameterisation.
State-dict names, shapes and order equal `unireplknet_shapes.py --list V [--deploy] [--downstream]`
(tests/reference/check_names.py asserts it).

Command line: `python3 unireplknet_ref.py --selftest` runs the re-parameterisation self-check
(also run by tests/reference/test_reference.py).
"""

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# §1 variant tables
# ---------------------------------------------------------------------------------------------
VARIANTS = {
    "a": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "f": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "p": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "n": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "t": ((3, 3, 18, 3), (80, 160, 320, 640)),
    "s": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "b": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "l": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xl": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}
VARIANT_ORDER = ["a", "f", "p", "n", "t", "s", "b", "l", "xl"]

# Dilated Reparam Block branches (k, r) in module order, keyed by the large kernel K (§2.5).
DRB_BRANCHES = {
    5: ((3, 1), (3, 2)),
    7: ((5, 1), (3, 2), (3, 3)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
}

LN_EPS = 1e-6
GRN_EPS = 1e-6

_SKIP_INIT = False


@contextlib.contextmanager
def no_init():
    """Build models without any weight initialisation (storage left as torch.empty gives it).
    Only for models whose every tensor is overwritten afterwards (re-parameterisation targets,
    randomised fixtures, name checks); saves seconds on the 2-core CI machine."""
    global _SKIP_INIT
    conv_cls = nn.modules.conv._ConvNd
    saved = (_SKIP_INIT, conv_cls.reset_parameters, nn.Linear.reset_parameters)
    _SKIP_INIT = True
    conv_cls.reset_parameters = lambda self: None
    nn.Linear.reset_parameters = lambda self: None
    try:
        yield
    finally:
        _SKIP_INIT, conv_cls.reset_parameters, nn.Linear.reset_parameters = saved


def default_kernel_sizes(depths):
    """Per-block kernel sizes selected by the depth tuple (§1.1)."""
    depths = tuple(depths)
    d0, d1, d2, d3 = depths
    if depths in ((2, 2, 6, 2), (2, 2, 8, 2)):
        s2 = [13] * d2
    elif depths == (3, 3, 18, 3):
        s2 = [13 if j % 2 == 0 else 3 for j in range(d2)]
    elif depths == (3, 3, 27, 3):
        s2 = [13 if j % 3 == 0 else 3 for j in range(d2)]
    else:
        raise ValueError("no default kernel sizes for depths %r: pass kernel_sizes explicitly"
                         % (depths,))
    return [[3] * d0, [13] * d1, s2, [13] * d3]


def drop_path_rates(depths, drop_path_rate):
    """§2.9: linear from 0 (first block) to drop_path_rate (last block) over all blocks."""
    total = sum(depths)
    if total <= 1:
        return [0.0] * total
    return [drop_path_rate * k / (total - 1) for k in range(total)]


# ---------------------------------------------------------------------------------------------
# Small modules
# ---------------------------------------------------------------------------------------------
class LayerNormChannelsFirst(nn.Module):
    """§2.2 channels_first LayerNorm over C of an NCHW tensor (biased variance, eps 1e-6)."""

    def __init__(self, channels, eps=LN_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(dim=1, keepdim=True)
        var = (x - mu).pow(2).mean(dim=1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * y + self.bias[:, None, None]


class ToNHWC(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class ToNCHW(nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """§2.7 Global Response Normalisation on NHWC input; beta absent in deploy mode."""

    def __init__(self, features, use_bias=True):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, features))
        if use_bias:
            self.beta = nn.Parameter(torch.zeros(1, 1, 1, features))
        else:
            self.beta = None

    def forward(self, z):
        # G = sqrt(sum_{h,w} z^2) per sample and channel, [N,1,1,F]. vector_norm (like upstream's
        # torch.norm) takes the gradient of G to be 0 where G == 0 (an all-zero channel, e.g. a
        # dead GELU channel in float32); a literal sqrt(sum z^2) would give NaN there.
        g = torch.linalg.vector_norm(z, ord=2, dim=(1, 2), keepdim=True)
        nx = g / (g.mean(dim=-1, keepdim=True) + GRN_EPS)
        y = (self.gamma * nx + 1.0) * z
        if self.beta is not None:
            y = y + self.beta
        return y


class SE(nn.Module):
    """§2.6 squeeze-and-excitation: mean pool, 1x1 down (C->C//4) + ReLU, 1x1 up + sigmoid."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, kernel_size=1, bias=True)
        self.up = nn.Conv2d(hidden, channels, kernel_size=1, bias=True)

    def forward(self, u):
        s = u.mean(dim=(2, 3), keepdim=True)
        t = F.relu(self.down(s))
        g = torch.sigmoid(self.up(t))
        return u * g


class DropPath(nn.Module):
    """§2.9 per-sample stochastic depth, scaled by 1/keep; identity in eval mode."""

    def __init__(self, rate):
        super().__init__()
        self.rate = float(rate)

    def forward(self, v):
        if not self.training or self.rate == 0.0:
            return v
        keep = 1.0 - self.rate
        mask = v.new_empty((v.shape[0],) + (1,) * (v.dim() - 1)).bernoulli_(keep)
        return v * mask / keep

    def extra_repr(self):
        return "rate=%g" % self.rate


def _dw_conv(channels, k, dilation=1, bias=False):
    pad = (dilation * (k - 1) + 1) // 2
    return nn.Conv2d(channels, channels, kernel_size=k, stride=1, padding=pad, dilation=dilation,
                     groups=channels, bias=bias)


def _bn(channels, sync):
    return nn.SyncBatchNorm(channels) if sync else nn.BatchNorm2d(channels)


class DilatedReparamBlock(nn.Module):
    """§2.5 LarK mixer. Training: BN(KxK DW) + sum_b BN_b(dilated DW_b). Deploy: KxK DW + bias."""

    def __init__(self, channels, kernel_size, deploy=False, use_sync_bn=False):
        super().__init__()
        if kernel_size not in DRB_BRANCHES:
            raise ValueError("Dilated Reparam Block: unsupported kernel size %r (need one of %s)"
                             % (kernel_size, sorted(DRB_BRANCHES)))
        self.kernel_size = kernel_size
        self.branches = DRB_BRANCHES[kernel_size]
        self.deploy = deploy
        self.lk_origin = _dw_conv(channels, kernel_size, bias=deploy)
        if not deploy:
            self.origin_bn = _bn(channels, use_sync_bn)
            # conv then its BN, branch by branch (state-dict order, §3.1)
            for k, r in self.branches:
                setattr(self, "dil_conv_k%d_%d" % (k, r), _dw_conv(channels, k, dilation=r))
                setattr(self, "dil_bn_k%d_%d" % (k, r), _bn(channels, use_sync_bn))

    def forward(self, x):
        if self.deploy:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in self.branches:
            conv = getattr(self, "dil_conv_k%d_%d" % (k, r))
            bn = getattr(self, "dil_bn_k%d_%d" % (k, r))
            out = out + bn(conv(x))
        return out


class UniRepLKNetBlock(nn.Module):
    """§2.4: x + DropPath(gamma * BN2(Linear2(GRN(GELU(Linear1(SE(BN(M(x))))))))).

    Deploy (§5): x + Linear2'(GRN_nobeta(GELU(Linear1(SE(M'(x)))))).
    """

    def __init__(self, dim, kernel_size, drop_path=0.0, layer_scale_init_value=1e-6, deploy=False,
                 use_sync_bn=False, ffn_factor=4):
        super().__init__()
        self.kernel_size = kernel_size
        self.deploy = deploy
        hidden = ffn_factor * dim
        use_ls = (not deploy) and layer_scale_init_value is not None and layer_scale_init_value > 0
        if use_ls:
            # registered first so that it is the block's first state-dict entry (§3.1)
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None
        if kernel_size == 0:
            self.dwconv = nn.Identity()
        elif kernel_size >= 7:
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy,
                                              use_sync_bn=use_sync_bn)
        elif kernel_size in (3, 5):
            self.dwconv = _dw_conv(dim, kernel_size, bias=deploy)
        else:
            raise ValueError("block kernel size must be 0, 3, 5 or one of %s, got %r"
                             % (sorted(k for k in DRB_BRANCHES if k >= 7), kernel_size))
        if deploy or kernel_size == 0:
            self.norm = nn.Identity()
        else:
            self.norm = _bn(dim, use_sync_bn)
        self.se = SE(dim, dim // 4)
        self.pwconv1 = nn.Sequential(ToNHWC(), nn.Linear(dim, hidden, bias=True))
        self.act = nn.Sequential(nn.GELU(), GRN(hidden, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(hidden, dim, bias=True), ToNCHW())
        else:
            self.pwconv2 = nn.Sequential(nn.Linear(hidden, dim, bias=False), ToNCHW(),
                                         _bn(dim, use_sync_bn))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        u = self.se(self.norm(self.dwconv(x)))
        v = self.pwconv2(self.act(self.pwconv1(u)))
        if self.gamma is not None:
            v = self.gamma[:, None, None] * v
        return x + self.drop_path(v)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
class UniRepLKNet(nn.Module):
    """UniRepLKNet (§1.2 switches; with_cp and attempt_use_lk_impl are not modelled: they do not
    change the numerics).

    features=False: classifier (final LayerNorm + head), forward returns logits [N, num_classes];
                    weights initialised as §4 (trunc-normal std 0.02, zero biases, head scaled).
    features=True:  backbone, norm0..norm3 instead of norm/head, forward returns the list of four
                    NCHW maps; convs/linears keep PyTorch's default init (§4).
    """

    def __init__(self, depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), in_chans=3,
                 num_classes=1000, drop_path_rate=0.0, layer_scale_init_value=1e-6,
                 head_init_scale=1.0, kernel_sizes=None, deploy=False, features=False,
                 use_sync_bn=False):
        super().__init__()
        depths = tuple(int(d) for d in depths)
        dims = tuple(int(d) for d in dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError("depths and dims need four entries")
        if kernel_sizes is None:
            kernel_sizes = default_kernel_sizes(depths)
        kernel_sizes = [list(ks) for ks in kernel_sizes]
        if [len(ks) for ks in kernel_sizes] != list(depths):
            raise ValueError("kernel_sizes %r do not match depths %r" % (kernel_sizes, depths))
        self.config = dict(depths=depths, dims=dims, in_chans=in_chans, num_classes=num_classes,
                           drop_path_rate=drop_path_rate,
                           layer_scale_init_value=layer_scale_init_value,
                           head_init_scale=head_init_scale, kernel_sizes=kernel_sizes,
                           deploy=deploy, features=features, use_sync_bn=use_sync_bn)
        self.depths, self.dims, self.kernel_sizes = depths, dims, kernel_sizes
        self.deploy, self.features = deploy, features

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=2, padding=1, bias=True),
            LayerNormChannelsFirst(dims[0] // 2),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1, bias=True),
            LayerNormChannelsFirst(dims[0])))
        for i in range(1, 4):
            self.downsample_layers.append(nn.Sequential(
                nn.Conv2d(dims[i - 1], dims[i], kernel_size=3, stride=2, padding=1, bias=True),
                LayerNormChannelsFirst(dims[i])))

        rates = drop_path_rates(depths, drop_path_rate)
        self.stages = nn.ModuleList()
        k = 0
        for i in range(4):
            blocks = []
            for j in range(depths[i]):
                blocks.append(UniRepLKNetBlock(dims[i], kernel_sizes[i][j], drop_path=rates[k],
                                               layer_scale_init_value=layer_scale_init_value,
                                               deploy=deploy, use_sync_bn=use_sync_bn))
                k += 1
            self.stages.append(nn.Sequential(*blocks))

        if features:
            for i in range(4):
                self.add_module("norm%d" % i, LayerNormChannelsFirst(dims[i]))
        else:
            if num_classes is None or num_classes <= 0:
                raise ValueError("classification mode needs num_classes > 0 (or features=True)")
            self.norm = nn.LayerNorm(dims[3], eps=LN_EPS)
            self.head = nn.Linear(dims[3], num_classes)
            if not _SKIP_INIT:
                self._init_classifier(head_init_scale)

    def _init_classifier(self, head_init_scale):
        # §4 (C) rows: trunc_normal(std 0.02, absolute bounds [-2, 2]) for every conv/linear weight,
        # zero biases; head weight and bias scaled afterwards.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    def forward(self, x):
        if self.features:
            outs = []
            for i in range(4):
                x = self.stages[i](self.downsample_layers[i](x))
                outs.append(getattr(self, "norm%d" % i)(x))
            return outs
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
        x = x.mean(dim=(2, 3))
        return self.head(self.norm(x))


def unireplknet(variant, **kwargs):
    """Build a named variant ('a', 'f', 'p', 'n', 't', 's', 'b', 'l', 'xl'; case-insensitive)."""
    key = variant.lower()
    if key not in VARIANTS:
        raise ValueError("unknown variant %r (known: %s)" % (variant, ", ".join(VARIANT_ORDER)))
    depths, dims = VARIANTS[key]
    return UniRepLKNet(depths=depths, dims=dims, **kwargs)


# ---------------------------------------------------------------------------------------------
# §5 structural re-parameterisation
# ---------------------------------------------------------------------------------------------
def _fuse_bn(weight, bias, bn):
    """§5.1: W' = W * s (per output channel), b' = beta + (b - mu) * s."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    w = weight * s.reshape(-1, *([1] * (weight.dim() - 1)))
    return w, bn.bias + (b - bn.running_mean) * s


def dilated_to_dense(w, r):
    """§5.2: [C, 1, k, k] kernel with dilation r -> dense [C, 1, r(k-1)+1, r(k-1)+1] kernel."""
    k = w.shape[-1]
    keq = r * (k - 1) + 1
    dense = w.new_zeros(w.shape[:-2] + (keq, keq))
    dense[..., ::r, ::r] = w
    return dense


def _fuse_mixer(block):
    """Return the deploy (weight, bias) of block.dwconv with the block's `norm` BN folded in."""
    m = block.dwconv
    if isinstance(m, DilatedReparamBlock):
        K = m.kernel_size
        w, b = _fuse_bn(m.lk_origin.weight, None, m.origin_bn)
        for k, r in m.branches:
            wb, bb = _fuse_bn(getattr(m, "dil_conv_k%d_%d" % (k, r)).weight, None,
                              getattr(m, "dil_bn_k%d_%d" % (k, r)))
            dense = dilated_to_dense(wb, r)
            p = K // 2 - dense.shape[-1] // 2
            w = w + F.pad(dense, [p, p, p, p])
            b = b + bb
    else:
        w, b = m.weight, None
    return _fuse_bn(w, b, block.norm)


def _fuse_pwconv2(block):
    """§5.5: fold GRN beta, pwconv2's BN and the layer scale into pwconv2 (weight, bias)."""
    w2 = block.pwconv2[0].weight                   # [C, 4C]
    bn2 = block.pwconv2[2]
    beta = block.act[1].beta.reshape(-1)           # [4C]
    s2 = bn2.weight / torch.sqrt(bn2.running_var + bn2.eps)
    g = block.gamma if block.gamma is not None else torch.ones_like(s2)
    w = (g * s2)[:, None] * w2
    b = g * (bn2.bias + (torch.mv(w2, beta) - bn2.running_mean) * s2)
    return w, b


def reparameterize(model):
    """§5: return a new deploy-structure model (eval mode, same dtype/device) whose eval forward
    equals `model`'s eval forward. `model` must be a training-structure UniRepLKNet; it is not
    modified. Uses BN running statistics; works for any floating dtype."""
    if model.deploy:
        raise ValueError("model is already in deploy structure")
    cfg = dict(model.config)
    cfg["deploy"] = True
    cfg["drop_path_rate"] = 0.0
    ref = next(model.parameters())
    with no_init():
        new = UniRepLKNet(**cfg).to(device=ref.device, dtype=ref.dtype)
    src = model.state_dict()
    out = {}
    with torch.no_grad():
        dst_keys = set(new.state_dict().keys())
        for name, t in src.items():             # stem, downsampling, norms, head, unchanged parts
            if name in dst_keys:
                out[name] = t
        for i, stage in enumerate(model.stages):
            for j, block in enumerate(stage):
                pre = "stages.%d.%d." % (i, j)
                if block.kernel_size != 0:
                    w, b = _fuse_mixer(block)
                    mixer = "dwconv.lk_origin." if block.kernel_size >= 7 else "dwconv."
                    out[pre + mixer + "weight"] = w
                    out[pre + mixer + "bias"] = b
                w, b = _fuse_pwconv2(block)
                out[pre + "pwconv2.0.weight"] = w
                out[pre + "pwconv2.0.bias"] = b
        new.load_state_dict(out, strict=True)
    return new.eval()


# ---------------------------------------------------------------------------------------------
# Randomisation used by the self-check and by make_fixture.py
# ---------------------------------------------------------------------------------------------
def randomize_(model, seed=0, weight_std=0.02):
    """Fill every tensor of a (training- or deploy-structure) model with random but meaningful
    values, deterministically for `seed` (numpy PCG64 stream, independent of torch's RNG):

      conv / linear weights and biases, SE, anything not listed below   N(0, weight_std)
        (weight_std='fan_in' uses N(0, 1/fan_in) for weights, N(0, 0.02) for their biases)
      BatchNorm weight U(0.5,1.5), bias N(0,0.1), running_mean N(0,0.1), running_var U(0.5,1.5),
        num_batches_tracked 7
      GRN gamma and beta N(0, 0.1); layer-scale gamma U(0.5, 1.5);
      LayerNorm (channels-first and final) weight U(0.5,1.5), bias N(0,0.1).

    Tensors are visited in state-dict order, each drawing its own values, so the result depends
    only on the seed and the structure."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(seed))
    kinds = {}
    for mname, m in model.named_modules():
        pre = mname + "." if mname else ""
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            kinds.update({pre + "weight": "U", pre + "bias": "N0.1", pre + "running_mean": "N0.1",
                          pre + "running_var": "U", pre + "num_batches_tracked": "nbt"})
        elif isinstance(m, GRN):
            kinds.update({pre + "gamma": "N0.1", pre + "beta": "N0.1"})
        elif isinstance(m, UniRepLKNetBlock):
            kinds[pre + "gamma"] = "U"
        elif isinstance(m, (LayerNormChannelsFirst, nn.LayerNorm)):
            kinds.update({pre + "weight": "U", pre + "bias": "N0.1"})
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and weight_std == "fan_in":
            fan_in = m.weight[0].numel()
            kinds[pre + "weight"] = "N%r" % (1.0 / math.sqrt(fan_in))
            kinds[pre + "bias"] = "N0.02"
    default = "N%r" % (0.02 if weight_std == "fan_in" else float(weight_std))
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if t is None:
                continue
            kind = kinds.get(name, default)
            shape = tuple(t.shape)
            if kind == "nbt":
                t.fill_(7)
                continue
            if kind == "U":
                vals = rng.uniform(0.5, 1.5, size=shape)
            else:
                vals = rng.normal(0.0, float(kind[1:]), size=shape)
            t.copy_(torch.from_numpy(np.asarray(vals, dtype=np.float64)).to(t.dtype))
    return model


# ---------------------------------------------------------------------------------------------
# Self-check of §5 on whole models
# ---------------------------------------------------------------------------------------------
def reparam_error(variant, dtype, size=64, batch=2, seed=0, weight_std="fan_in"):
    """Relative error (max|d|/max|y|, sum|d|/sum|y|) between the training-structure eval forward
    and the re-parameterised model's forward on a random input."""
    with no_init():
        model = unireplknet(variant).to(dtype)
    randomize_(model, seed=seed, weight_std=weight_std)
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, 3, size, size, generator=g, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        y = model(x)
        yd = reparameterize(model)(x)
    d = (yd - y).abs()
    return (d.max() / y.abs().max()).item(), (d.sum() / y.abs().sum()).item()


def selftest(variants=("a", "t"), size=64, verbose=True):
    """fp64 relative error < 1e-12 and fp32 < 1e-5 (max-abs relative) for each variant."""
    limits = {torch.float64: 1e-12, torch.float32: 1e-5}
    ok = True
    for v in variants:
        for dtype, lim in limits.items():
            rel_max, rel_sum = reparam_error(v, dtype, size=size)
            good = rel_max < lim and rel_sum < lim
            ok = ok and good
            if verbose:
                print("reparam %-2s %-7s %dx%d: max|d|/max|y| = %.2e, sum|d|/sum|y| = %.2e "
                      "(limit %.0e) %s" % (v.upper(), str(dtype).replace("torch.", ""), size, size,
                                            rel_max, rel_sum, lim, "ok" if good else "FAIL"))
    return ok


if __name__ == "__main__":
    import sys

    if "--selftest" in sys.argv[1:]:
        sys.exit(0 if selftest() else 1)
    print(__doc__)
