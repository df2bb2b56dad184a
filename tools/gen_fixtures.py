#!/usr/bin/python3
"""PyTorch parity fixtures for qgrad's C tests.

How to run (from anywhere; paths are relative to the repository root). Use Debian's
Python, which has PyTorch 1.13; a `python3` earlier on PATH may be another one:

    /usr/bin/python3 tools/gen_fixtures.py                 # every fixture file
    /usr/bin/python3 tools/gen_fixtures.py autograd_ops    # only the named ones
    /usr/bin/python3 tools/gen_fixtures.py --list          # print the case names

What it writes: tests/fixtures/<file>.safetensors for each fixture file below. Each
case <c> of a file stores

    <c>.in0, <c>.in1, ...   the inputs (float inputs require grad unless the case
                            says otherwise; integer ones are targets, masks)
    <c>.out                 the output of the op
    <c>.idx                 extra integer output where there is one (max's indices)
    <c>.gout                a random upstream gradient of the output's shape
                            (0-dim for a scalar output); absent if the output has no
                            gradient (argmax)
    <c>.ginN                the gradient of input N from out.backward(gout), for the
                            inputs that require grad

and, for float32 cases, <c>.ref.out / <c>.ref.ginN: the float64 reference, the same case
rerun in float64 on the same (exactly widened) inputs (see Fixture._reference). The C
tests judge qgrad's float32 result by its distance from this reference against
PyTorch's own float32 distance from it (tests/parity.h). Cases named <c>_f64 are the
same case in float64. Names starting with "_format." hold
known values in every dtype, for the reader's own test (tests/test_safetensors.c).

The output is deterministic: one thread, and each case draws its inputs from its own
generator seeded by a CRC of its name, so adding a case leaves the others' bytes as
they were. The safetensors file is written by hand (struct + json; the Python
`safetensors` package is not installed): a u64 little-endian header length, the JSON
header padded with spaces so the data starts 8-byte aligned, then the tensors in
insertion order, little-endian, C order.

To add a fixture file: write a function taking a Fixture, add cases to it, and list it
in FILES at the bottom.
"""

import argparse
import copy
import json
import os
import struct
import sys
import zlib

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures")

# ------------------------------------------------------------------ safetensors writer

_DTYPES = {
    torch.float32: ("F32", "<f4"),
    torch.float64: ("F64", "<f8"),
    torch.int64: ("I64", "<i8"),
    torch.int32: ("I32", "<i4"),
    torch.uint8: ("U8", "u1"),
    torch.int8: ("I8", "i1"),
    torch.bool: ("BOOL", "?"),
}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> tensor (insertion order kept); metadata: dict str -> str."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, t in tensors.items():
        code, np_dtype = _DTYPES[t.dtype]
        data = t.detach().contiguous().numpy().astype(np_dtype, copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ------------------------------------------------------------------ cases


class Rand:
    """Inputs of one case, drawn from the case's own generator."""

    def __init__(self, seed, dtype):
        self.g = torch.Generator().manual_seed(seed)
        self.dtype = dtype

    def randn(self, *shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=self.g, dtype=self.dtype) * scale + shift

    def uniform(self, lo, hi, *shape):
        return torch.rand(*shape, generator=self.g, dtype=self.dtype) * (hi - lo) + lo

    def signed(self, lo, hi, *shape):
        """|x| in [lo, hi), random sign: away from 0."""
        s = torch.where(torch.rand(*shape, generator=self.g) < 0.5, -1.0, 1.0).to(self.dtype)
        return self.uniform(lo, hi, *shape) * s

    def randint(self, hi, *shape):
        return torch.randint(0, hi, shape, generator=self.g, dtype=torch.int64)

    def mask(self, *shape):
        return torch.randint(0, 2, shape, generator=self.g, dtype=torch.uint8)


def away(x, points, margin=0.05):
    """Moves entries of x that are within margin of one of points to that distance, so
    no input sits at a kink (relu at 0, clamp edges) or a tie."""
    for p in points:
        d = x - p
        x = torch.where(d.abs() < margin, p + torch.where(d >= 0, margin, -margin), x)
    return x


class Fixture:
    def __init__(self, name, out_dir=OUT_DIR):
        self.name = name
        self.out_dir = out_dir  # where side files (PyTorch-written checkpoints) go
        self.tensors = {}
        self.meta = {}
        self.cases = []

    def add(self, name, t):
        assert name not in self.tensors, name
        self.tensors[name] = t.detach().clone()

    def case(self, name, make, fn, f64=False, grad=None):
        """make(r) -> list of inputs; fn(*inputs) -> output, or (output, indices).
        grad: list of booleans, which float inputs require grad (default: all).
        f64: also add name_f64, the same case in float64."""
        variants = [(name, torch.float32)] + ([(name + "_f64", torch.float64)] if f64 else [])
        for cname, dtype in variants:
            r = Rand(zlib.crc32(cname.encode()), dtype)
            ins = [x.detach().clone() for x in make(r)]
            for i, x in enumerate(ins):
                x.requires_grad_(x.is_floating_point() and (grad is None or grad[i]))
            res = fn(*ins)
            out, idx = res if isinstance(res, tuple) else (res, None)
            for i, x in enumerate(ins):
                self.add(f"{cname}.in{i}", x)
            self.add(f"{cname}.out", out)
            if idx is not None:
                self.add(f"{cname}.idx", idx)
            gout = None
            if out.requires_grad:
                gout = torch.randn(out.shape, generator=r.g, dtype=out.dtype)
                out.backward(gout)
                self.add(f"{cname}.gout", gout)
                for i, x in enumerate(ins):
                    if x.requires_grad:
                        self.add(f"{cname}.gin{i}", x.grad)
            if dtype == torch.float32:
                self._reference(cname, fn, ins, out, gout)
            self.cases.append(cname)

    def _reference(self, cname, fn, ins, out, gout):
        """The float64 reference of a float32 case: the case rerun in float64 on the
        same inputs (widening is exact), stored as <c>.ref.out and <c>.ref.ginN."""
        if not out.is_floating_point():
            return
        ins64 = [x.detach().double() if x.is_floating_point() else x.detach().clone() for x in ins]
        for x64, x in zip(ins64, ins):
            x64.requires_grad_(x.requires_grad)
        res = fn(*ins64)
        out64 = res[0] if isinstance(res, tuple) else res
        self.add(f"{cname}.ref.out", out64)
        if gout is not None:
            out64.backward(gout.double())
            for i, (x, x64) in enumerate(zip(ins, ins64)):
                if x.requires_grad:
                    self.add(f"{cname}.ref.gin{i}", x64.grad)


def format_checks(fx):
    """Known values in every dtype, for the reader's test."""
    vals = [0, 1.5, -2.25, 3, 1e-20, -1e20]
    fx.add("_format.f32", torch.tensor(vals, dtype=torch.float32).reshape(2, 3))
    fx.add("_format.f64", torch.tensor([0, 1.5, -2.25, 3, 1e-300, -1e300], dtype=torch.float64).reshape(2, 3))
    fx.add("_format.i64", torch.tensor([0, -1, 2**40, -(2**40), 2**53, 7], dtype=torch.int64).reshape(2, 3))
    fx.add("_format.i32", torch.tensor([0, -1, 2**31 - 1, -(2**31), 65536, 7], dtype=torch.int32).reshape(2, 3))
    fx.add("_format.u8", torch.tensor([0, 1, 127, 128, 255, 7], dtype=torch.uint8).reshape(2, 3))
    fx.add("_format.i8", torch.tensor([0, -1, 127, -128, 64, 7], dtype=torch.int8).reshape(2, 3))
    fx.add("_format.bool", torch.tensor([1, 0, 0, 1, 1, 0], dtype=torch.bool).reshape(2, 3))
    fx.add("_format.scalar", torch.tensor(0.25, dtype=torch.float32))
    fx.add("_format.empty", torch.zeros(0, 3, dtype=torch.float32))


def autograd_ops(fx):
    """Every differentiable op of include/qgrad/autograd.h, forward and backward."""
    format_checks(fx)
    c = fx.case

    # elementwise binary, with broadcasting on one or both sides
    c("add_bcast", lambda r: [r.randn(3, 4), r.randn(4)], torch.add, f64=True)
    c("add_bcast2", lambda r: [r.randn(3, 1), r.randn(1, 4)], torch.add)
    c("sub_bcast", lambda r: [r.randn(2, 3, 4), r.randn(2, 1, 4)], torch.sub, f64=True)
    c("mul_bcast", lambda r: [r.randn(3, 4), r.randn(3, 1)], torch.mul, f64=True)
    c("div_bcast", lambda r: [r.randn(3, 4), r.signed(0.5, 2.0, 1, 4)], torch.div, f64=True)
    c("mul_noncontig", lambda r: [r.randn(4, 3), r.randn(3, 4)], lambda a, b: a.t() * b)
    c("mul_self", lambda r: [r.randn(3, 4)], lambda x: x * x + x)  # x used twice
    # scalar variants
    c("add_scalar", lambda r: [r.randn(3, 4)], lambda x: x + 1.5)
    c("sub_scalar", lambda r: [r.randn(3, 4)], lambda x: x - 0.75)
    c("mul_scalar", lambda r: [r.randn(3, 4)], lambda x: x * -2.0)
    c("div_scalar", lambda r: [r.randn(3, 4)], lambda x: x / 3.0)
    c("pow_2_5", lambda r: [r.uniform(0.2, 2.0, 3, 4)], lambda x: x**2.5, f64=True)
    c("pow_m1_5", lambda r: [r.uniform(0.2, 2.0, 3, 4)], lambda x: x**-1.5)
    # unary
    c("neg", lambda r: [r.randn(3, 4)], torch.neg)
    c("exp", lambda r: [r.randn(3, 4, scale=2.0)], torch.exp, f64=True)
    c("log", lambda r: [r.uniform(0.1, 3.0, 3, 4)], torch.log, f64=True)
    c("sqrt", lambda r: [r.uniform(0.1, 3.0, 3, 4)], torch.sqrt)
    c("rsqrt", lambda r: [r.uniform(0.1, 3.0, 3, 4)], torch.rsqrt)
    c("abs", lambda r: [r.signed(0.05, 2.0, 3, 4)], torch.abs)
    c("tanh", lambda r: [r.randn(3, 4, scale=2.0)], torch.tanh, f64=True)
    c("sigmoid", lambda r: [r.randn(3, 4, scale=3.0)], torch.sigmoid, f64=True)
    c("relu", lambda r: [r.signed(0.05, 2.0, 3, 4)], torch.relu)
    c("clamp", lambda r: [away(r.randn(3, 4), [-0.5, 0.5])], lambda x: torch.clamp(x, -0.5, 0.5))
    c("hardtanh", lambda r: [away(r.randn(3, 4, scale=1.5), [-0.8, 1.2])], lambda x: F.hardtanh(x, -0.8, 1.2))
    c("relu6", lambda r: [away(r.randn(3, 4, scale=4.0, shift=2.0), [0.0, 6.0])], F.relu6)
    c("maximum", lambda r: _no_ties(r.randn(3, 4), r.randn(4)), torch.maximum)
    c("minimum", lambda r: _no_ties(r.randn(3, 4), r.randn(4)), torch.minimum)
    c("where", lambda r: [r.mask(3, 4), r.randn(3, 4), r.randn(1, 4)], lambda m, a, b: torch.where(m.bool(), a, b))
    # matmul, linear
    c("matmul", lambda r: [r.randn(5, 7), r.randn(7, 3)], torch.matmul, f64=True)
    c("matmul_batched", lambda r: [r.randn(2, 5, 7), r.randn(1, 7, 3)], torch.matmul, f64=True)
    c("matmul_bcast2d", lambda r: [r.randn(2, 5, 7), r.randn(7, 3)], torch.matmul)
    c("matmul_t", lambda r: [r.randn(7, 5), r.randn(3, 7)], lambda a, b: a.t() @ b.t())
    c("linear", lambda r: [r.randn(4, 6), r.randn(5, 6), r.randn(5)], F.linear, f64=True)
    c("linear_nobias", lambda r: [r.randn(4, 6), r.randn(5, 6)], F.linear)
    c("linear_3d", lambda r: [r.randn(2, 3, 6), r.randn(5, 6), r.randn(5)], F.linear)
    # reductions
    c("sum_dims", lambda r: [r.randn(3, 4, 5)], lambda x: x.sum(dim=(0, 2)), f64=True)
    c("sum_keepdim", lambda r: [r.randn(3, 4, 5)], lambda x: x.sum(dim=1, keepdim=True))
    c("sum_all", lambda r: [r.randn(3, 4, 5)], lambda x: x.sum())
    c("mean_keepdim", lambda r: [r.randn(3, 4, 5)], lambda x: x.mean(dim=1, keepdim=True))
    c("mean_dims", lambda r: [r.randn(3, 4, 5)], lambda x: x.mean(dim=(0, 2)))
    c("mean_all", lambda r: [r.randn(3, 4, 5)], lambda x: x.mean())
    c("var_dim_unbiased", lambda r: [r.randn(4, 6, shift=3.0)], lambda x: x.var(dim=1, unbiased=True), f64=True)
    c("var_dim_biased", lambda r: [r.randn(4, 6)], lambda x: x.var(dim=0, unbiased=False))
    c("var_keepdim", lambda r: [r.randn(3, 4, 5)], lambda x: x.var(dim=(0, 2), unbiased=True, keepdim=True))
    c("var_all_unbiased", lambda r: [r.randn(4, 6)], lambda x: x.var(unbiased=True))
    c("var_all_biased", lambda r: [r.randn(4, 6)], lambda x: x.var(unbiased=False))
    c("max_dim", lambda r: [r.randn(4, 6)], lambda x: tuple(torch.max(x, dim=1)))
    c("max_keepdim", lambda r: [r.randn(3, 4, 5)], lambda x: tuple(torch.max(x, dim=0, keepdim=True)))
    c("argmax", lambda r: [r.randn(4, 6)], lambda x: torch.argmax(x, dim=1))
    # softmax family
    c("softmax", lambda r: [r.randn(4, 6)], lambda x: torch.softmax(x, dim=-1), f64=True)
    c("softmax_dim0", lambda r: [r.randn(3, 4, 5)], lambda x: torch.softmax(x, dim=0))
    c("softmax_large", lambda r: [r.randn(4, 6, scale=50.0)], lambda x: torch.softmax(x, dim=1))
    c("log_softmax", lambda r: [r.randn(4, 6)], lambda x: torch.log_softmax(x, dim=1), f64=True)
    c("log_softmax_large", lambda r: [r.randn(4, 6, scale=50.0)], lambda x: torch.log_softmax(x, dim=1), f64=True)
    c("log_softmax_3d", lambda r: [r.randn(2, 5, 3)], lambda x: torch.log_softmax(x, dim=1))
    # losses
    c("cross_entropy_mean", lambda r: [r.randn(5, 7), r.randint(7, 5)], F.cross_entropy, f64=True)
    c("cross_entropy_sum", lambda r: [r.randn(5, 7), r.randint(7, 5)],
      lambda x, t: F.cross_entropy(x, t, reduction="sum"))
    c("cross_entropy_none", lambda r: [r.randn(5, 7), r.randint(7, 5)],
      lambda x, t: F.cross_entropy(x, t, reduction="none"))
    c("cross_entropy_large", lambda r: [r.randn(5, 7, scale=50.0), r.randint(7, 5)], F.cross_entropy)
    # probability targets and label smoothing (PyTorch 1.13 takes both)
    probs = lambda r: torch.softmax(r.randn(5, 7), 1)
    c("cross_entropy_probs", lambda r: [r.randn(5, 7), probs(r)], F.cross_entropy, f64=True, grad=[True, False])
    c("cross_entropy_probs_sum", lambda r: [r.randn(5, 7), probs(r)], lambda x, t: F.cross_entropy(x, t, reduction="sum"),
      grad=[True, False])
    c("cross_entropy_probs_none_ls", lambda r: [r.randn(5, 7), probs(r)],
      lambda x, t: F.cross_entropy(x, t, reduction="none", label_smoothing=0.2), grad=[True, False])
    ignored = lambda r: torch.tensor([0, -100, 3, 6, -100, 1])
    c("cross_entropy_ls", lambda r: [r.randn(6, 7), ignored(r)], lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
      f64=True)
    c("cross_entropy_ls_sum", lambda r: [r.randn(6, 7), ignored(r)],
      lambda x, t: F.cross_entropy(x, t, reduction="sum", label_smoothing=0.3))
    c("cross_entropy_ls_none", lambda r: [r.randn(6, 7), ignored(r)],
      lambda x, t: F.cross_entropy(x, t, reduction="none", label_smoothing=0.05))
    c("nll_loss_mean", lambda r: [torch.log_softmax(r.randn(5, 7), 1), r.randint(7, 5)], F.nll_loss)
    c("nll_loss_sum", lambda r: [torch.log_softmax(r.randn(5, 7), 1), r.randint(7, 5)],
      lambda x, t: F.nll_loss(x, t, reduction="sum"))
    c("mse_loss_mean", lambda r: [r.randn(3, 4), r.randn(3, 4)], F.mse_loss, f64=True)
    c("mse_loss_sum", lambda r: [r.randn(3, 4), r.randn(3, 4)], lambda x, y: F.mse_loss(x, y, reduction="sum"))
    # joins
    c("cat", lambda r: [r.randn(3, 2), r.randn(3, 4), r.randn(3, 1)], lambda a, b, d: torch.cat([a, b, d], 1))
    c("cat_dim0", lambda r: [r.randn(2, 3), r.randn(1, 3)], lambda a, b: torch.cat([a, b], 0))
    c("stack", lambda r: [r.randn(3, 4), r.randn(3, 4), r.randn(3, 4)], lambda a, b, d: torch.stack([a, b, d], 0))
    c("stack_dim1", lambda r: [r.randn(3, 4), r.randn(3, 4)], lambda a, b: torch.stack([a, b], 1))
    # views, each followed by an op so the gradient flows back through a strided tensor
    c("transpose", lambda r: [r.randn(3, 4), r.randn(4, 3)], lambda x, w: x.transpose(0, 1) * w)
    c("permute", lambda r: [r.randn(2, 3, 4), r.randn(4, 2, 3)], lambda x, w: x.permute(2, 0, 1) * w)
    c("narrow", lambda r: [r.randn(5, 4), r.randn(3, 4)], lambda x, w: x.narrow(0, 1, 3) * w)
    c("slice", lambda r: [r.randn(6, 5), r.randn(6, 2)], lambda x, w: x[:, 1:5:2] * w)
    c("select", lambda r: [r.randn(3, 4, 5), r.randn(3, 5)], lambda x, w: x.select(1, 2) * w)
    c("expand", lambda r: [r.randn(3, 1), r.randn(2, 3, 4)], lambda x, w: x.expand(2, -1, 4) * w)
    c("view", lambda r: [r.randn(2, 6), r.randn(3, 4)], lambda x, w: x.view(3, 4) * w)
    c("reshape_noncontig", lambda r: [r.randn(3, 4), r.randn(2, 6)], lambda x, w: x.t().reshape(2, 6) * w)
    c("squeeze", lambda r: [r.randn(3, 1, 4), r.randn(3, 4)], lambda x, w: x.squeeze(1) * w)
    c("unsqueeze", lambda r: [r.randn(3, 4), r.randn(3, 5, 4)], lambda x, w: x.unsqueeze(1) + w)
    c("flatten", lambda r: [r.randn(2, 3, 4), r.randn(2, 12)], lambda x, w: x.flatten(1) * w)
    c("flatten_noncontig", lambda r: [r.randn(2, 3, 4), r.randn(12, 2)],
      lambda x, w: x.transpose(0, 2).flatten(0, 1) * w)
    c("contiguous", lambda r: [r.randn(3, 4), r.randn(4, 3)], lambda x, w: x.t().contiguous() * w)
    c("transpose_sum", lambda r: [r.randn(3, 4, 5)], lambda x: x.transpose(0, 2).sum(dim=1))
    # casts
    c("to_double", lambda r: [r.randn(3, 4), r.randn(3, 4).double()], lambda x, w: x.double() * w)
    # a small network: linear -> relu -> linear -> cross_entropy
    c("chain_mlp", lambda r: [r.randn(4, 6), r.randn(8, 6), r.randn(8), r.randn(3, 8), r.randn(3), r.randint(3, 4)],
      lambda x, w1, b1, w2, b2, t: F.cross_entropy(F.linear(torch.relu(F.linear(x, w1, b1)), w2, b2), t), f64=True)


def nn_layers(fx):
    """Functional forms of the nn layers (parameters are inputs, so their gradients
    are gins), and BatchNorm modules' running statistics after 3 training steps."""
    c = fx.case
    c("conv2d", lambda r: [r.randn(2, 3, 7, 6), r.randn(4, 3, 3, 3), r.randn(4)],
      lambda x, w, b: F.conv2d(x, w, b, padding=1), f64=True)
    c("conv2d_s2_d2_nobias", lambda r: [r.randn(2, 3, 9, 8), r.randn(4, 3, 3, 2)],
      lambda x, w: F.conv2d(x, w, None, stride=2, dilation=2))
    c("conv2d_groups", lambda r: [r.randn(2, 4, 6, 6), r.randn(6, 2, 3, 3), r.randn(6)],
      lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=(2, 1), groups=2))
    c("conv2d_1x1", lambda r: [r.randn(3, 5, 4, 4), r.randn(7, 5, 1, 1), r.randn(7)],
      lambda x, w, b: F.conv2d(x, w, b))
    c("conv2d_fmnist", lambda r: [r.randn(4, 1, 28, 28), r.randn(32, 1, 3, 3)],
      lambda x, w: F.conv2d(x, w, None, padding=1))
    c("conv2d_fmnist2", lambda r: [r.randn(2, 32, 14, 14), r.randn(64, 32, 3, 3)],
      lambda x, w: F.conv2d(x, w, None, padding=1))
    c("conv1d", lambda r: [r.randn(2, 4, 9), r.randn(5, 4, 3), r.randn(5)],
      lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1), f64=True)
    c("conv1d_groups_dil", lambda r: [r.randn(2, 4, 11), r.randn(6, 2, 3)],
      lambda x, w: F.conv1d(x, w, None, padding=2, dilation=2, groups=2))
    for dims, shape in (("2d", (6, 3)), ("3d", (4, 3, 5)), ("4d", (3, 3, 4, 5))):
        c("batch_norm_train_" + dims, lambda r, shape=shape: [r.randn(*shape, scale=2.0, shift=0.5), r.randn(3), r.randn(3)],
          lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, eps=1e-5), f64=(dims == "4d"))
    c("batch_norm_eval", lambda r: [r.randn(3, 3, 4, 5), r.uniform(0.5, 2, 3), r.randn(3), r.randn(3), r.uniform(0.5, 2.0, 3)],
      lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3), grad=[True, True, True, False, False])
    c("batch_norm_noaffine", lambda r: [r.randn(4, 3, 5)],
      lambda x: F.batch_norm(x, None, None, None, None, training=True))
    c("max_pool2d", lambda r: [r.randn(2, 3, 8, 8)], lambda x: F.max_pool2d(x, 2))
    c("max_pool2d_pad_ceil", lambda r: [r.randn(2, 2, 7, 9)],
      lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True))
    c("max_pool2d_dil", lambda r: [r.randn(1, 2, 9, 9)], lambda x: F.max_pool2d(x, (2, 3), stride=(2, 1), dilation=2))
    c("avg_pool2d", lambda r: [r.randn(2, 3, 8, 8)], lambda x: F.avg_pool2d(x, 2))
    c("avg_pool2d_pad_nocount", lambda r: [r.randn(2, 2, 7, 9)],
      lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))
    c("avg_pool2d_pad_count", lambda r: [r.randn(2, 2, 7, 9)],
      lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True))
    c("avg_pool2d_divisor", lambda r: [r.randn(1, 2, 6, 6)], lambda x: F.avg_pool2d(x, 2, divisor_override=3))
    c("adaptive_avg_pool2d", lambda r: [r.randn(2, 3, 7, 5)], lambda x: F.adaptive_avg_pool2d(x, (3, 2)))
    c("flatten_linear", lambda r: [r.randn(2, 3, 4, 4), r.randn(5, 48), r.randn(5)],
      lambda x, w, b: F.linear(torch.flatten(x, 1), w, b))
    # BatchNorm modules: 3 training forward+backward passes, then running stats
    for name, mk, shape in (("bn2d", lambda: torch.nn.BatchNorm2d(3), (4, 3, 5, 5)),
                            ("bn1d", lambda: torch.nn.BatchNorm1d(3), (8, 3)),
                            ("bn1d_3d", lambda: torch.nn.BatchNorm1d(3, momentum=0.3), (4, 3, 6)),
                            ("bn2d_cumulative", lambda: torch.nn.BatchNorm2d(3, momentum=None), (4, 3, 5, 5))):
        r = Rand(zlib.crc32(name.encode()), torch.float32)
        bn = mk()
        with torch.no_grad():
            bn.weight.copy_(r.uniform(0.5, 1.5, 3))
            bn.bias.copy_(r.randn(3))
        fx.add(f"{name}.init_weight", bn.weight)
        fx.add(f"{name}.init_bias", bn.bias)
        bn64 = copy.deepcopy(bn).double()  # the float64 reference, on the same data
        for step in range(3):
            x = r.randn(*shape, scale=1.5, shift=0.3 * step)
            y = bn(x)
            g = r.randn(*y.shape)
            y.backward(g)
            y64 = bn64(x.double())
            y64.backward(g.double())
            fx.add(f"{name}.x{step}", x)
            fx.add(f"{name}.g{step}", g)
        for pre, mod, out in (("", bn, y), ("ref.", bn64, y64)):
            for k, v in mod.state_dict().items():
                fx.add(f"{name}.{pre}state.{k}", v)
            fx.add(f"{name}.{pre}out2", out)
            fx.add(f"{name}.{pre}grad_weight", mod.weight.grad)
            fx.add(f"{name}.{pre}grad_bias", mod.bias.grad)
        fx.cases.append(name)


class SmallCNN(torch.nn.Module):
    """conv+bn+relu, pool, conv, flatten, linear: the checkpoint test's model."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 6, 3), torch.nn.ReLU())
        self.flatten = torch.nn.Flatten()
        self.fc = torch.nn.Linear(6 * 2 * 2, 3)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))


def small_cnn(fx):
    """A PyTorch-written checkpoint (small_cnn_state.safetensors, tensors ordered as
    safetensors.torch.save_file orders them) and, in this file, an input and the
    model's eval and train outputs."""
    torch.manual_seed(3)
    m = SmallCNN()
    x = torch.randn(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    m.train()
    m(x[1])  # one training pass so the running stats are not the defaults
    m.eval()
    with torch.no_grad():
        out_eval = m(x[0])
        out_eval64 = copy.deepcopy(m).double()(x[0].double())
    sd = m.state_dict()
    order = sorted(sd.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    write_safetensors(os.path.join(fx.out_dir, "small_cnn_state.safetensors"), dict(order), {"format": "pt"})
    fx.add("x", x[0])
    fx.add("out_eval", out_eval)
    fx.add("ref.out_eval", out_eval64)
    fx.cases.append("small_cnn")


# SGD configurations of the optim fixture: name -> torch.optim.SGD keyword arguments
# (tests/test_optim.c lists the same ones); "steplr" also steps StepLR(3, 0.5) after
# each optimizer step.
OPTIM_SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "dampening": dict(lr=0.1, momentum=0.9, dampening=0.5),
    "wd_momentum": dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
    "maximize": dict(lr=0.1, maximize=True),
    "maximize_momentum_wd": dict(lr=0.05, momentum=0.8, weight_decay=1e-2, maximize=True),
    "steplr": dict(lr=0.1, momentum=0.9),
}


def optim(fx):
    """torch.optim.SGD and lr schedulers (tests/test_optim.c).

    sgd.init.<p>       the initial parameters: w (3, 5), b (3), c (2) float32, d (2, 3)
                       float64 (the optimizer's parameter order)
    sgd.grad.<t>.<p>   the gradient given to p at step t (0..9); c has none at steps 0..2
                       (PyTorch skips a parameter whose grad is None)
    sgd.<cfg>.<t>.<p>  the parameters after step t of configuration cfg (OPTIM_SGD_CONFIGS,
                       also in the metadata as "sgd.<cfg>")
    lr.<sched>         float64 (31): get_last_lr()[0] after construction and after each
                       of 30 steps, optimizer lr 0.1 (the scheduler is in the metadata)
    """
    import warnings

    r = Rand(zlib.crc32(b"optim"), torch.float32)
    shapes = {"w": (3, 5), "b": (3,), "c": (2,), "d": (2, 3)}
    init = {k: r.randn(*v) for k, v in shapes.items()}
    init["d"] = init["d"].double()
    grads = []
    for t in range(10):
        g = {k: r.randn(*v) for k, v in shapes.items() if not (k == "c" and t < 3)}
        g["d"] = g["d"].double()
        grads.append(g)
    for k, v in init.items():
        fx.add(f"sgd.init.{k}", v)
    for t, g in enumerate(grads):
        for k, v in g.items():
            fx.add(f"sgd.grad.{t}.{k}", v)
    for cfg, kw in OPTIM_SGD_CONFIGS.items():
        ps = {k: v.clone().requires_grad_() for k, v in init.items()}
        opt = torch.optim.SGD(list(ps.values()), **kw)
        sched = torch.optim.lr_scheduler.StepLR(opt, 3, 0.5) if cfg == "steplr" else None
        for t, g in enumerate(grads):
            for k, p in ps.items():
                p.grad = g[k].clone() if k in g else None
            opt.step()
            if sched:
                sched.step()
            for k, p in ps.items():
                fx.add(f"sgd.{cfg}.{t}.{k}", p)
        fx.meta[f"sgd.{cfg}"] = json.dumps(kw) + (" + StepLR(step_size=3, gamma=0.5)" if sched else "")
        fx.cases.append("sgd." + cfg)

    L = torch.optim.lr_scheduler
    scheds = {
        "step": ("StepLR(step_size=7, gamma=0.5)", lambda o: L.StepLR(o, 7, 0.5)),
        "multistep": ("MultiStepLR(milestones=[5, 12, 20], gamma=0.1)", lambda o: L.MultiStepLR(o, [5, 12, 20], 0.1)),
        "multistep_dup": ("MultiStepLR(milestones=[12, 5, 5], gamma=0.5)", lambda o: L.MultiStepLR(o, [12, 5, 5], 0.5)),
        "cosine": ("CosineAnnealingLR(T_max=10, eta_min=0.001)", lambda o: L.CosineAnnealingLR(o, 10, 0.001)),
        "cosine_t7": ("CosineAnnealingLR(T_max=7)", lambda o: L.CosineAnnealingLR(o, 7)),
        "linear": ("LinearLR(start_factor=0.1, total_iters=5)", lambda o: L.LinearLR(o, start_factor=0.1, total_iters=5)),
        "linear_decay": ("LinearLR(start_factor=1.0, end_factor=0.25, total_iters=8)",
                         lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.25, total_iters=8)),
        "sequential": ("SequentialLR([LinearLR(start_factor=0.1, total_iters=5), "
                       "CosineAnnealingLR(T_max=20, eta_min=0.001)], milestones=[5])",
                       lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.1, total_iters=5),
                                                    L.CosineAnnealingLR(o, 20, 0.001)], milestones=[5])),
        "sequential3": ("SequentialLR([StepLR(step_size=2, gamma=0.5), MultiStepLR(milestones=[3], gamma=0.1), "
                        "CosineAnnealingLR(T_max=6)], milestones=[4, 9])",
                        lambda o: L.SequentialLR(o, [L.StepLR(o, 2, 0.5), L.MultiStepLR(o, [3], 0.1),
                                                     L.CosineAnnealingLR(o, 6)], milestones=[4, 9])),
        "chained": ("ChainedScheduler([LinearLR(start_factor=0.5, total_iters=4), StepLR(step_size=6, gamma=0.5)])",
                    lambda o: L.ChainedScheduler([L.LinearLR(o, start_factor=0.5, total_iters=4), L.StepLR(o, 6, 0.5)])),
    }
    for name, (desc, make) in scheds.items():
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SequentialLR's step(0) is deprecated usage
            s = make(opt)
            seq = [s.get_last_lr()[0]]
            for _ in range(30):
                opt.step()
                s.step()
                seq.append(s.get_last_lr()[0])
        fx.add(f"lr.{name}", torch.tensor(seq, dtype=torch.float64))
        fx.meta[f"lr.{name}"] = desc
        fx.cases.append("lr." + name)


def qat_reference(mod):
    """The float64 reference of a QAT model: a copy in float64 whose fake-quant modules
    stay float32 (PyTorch's fake-quant kernels take float32 only; their rounding is
    part of the definition, not an approximation), fed float32 and widened back."""
    import torch.ao.quantization as tq
    m = copy.deepcopy(mod).double()
    for sub in m.modules():
        if isinstance(sub, tq.FakeQuantizeBase):
            sub.float()
            sub.register_forward_pre_hook(lambda s, i: tuple(t.float() for t in i))
            sub.register_forward_hook(lambda s, i, o: o.double())
    return m


def _qat_cases():
    """(case, float module maker, QAT class, qconfig, mode) for qat_modules."""
    import torch.ao.nn.qat as nnqat
    import torch.ao.nn.qat.dynamic as nnqatd
    import torch.nn.intrinsic as nni
    import torch.nn.intrinsic.qat as nniqat
    import torch.ao.quantization as tq
    nn = torch.nn
    fb, qn, dflt = tq.get_default_qat_qconfig("fbgemm"), tq.get_default_qat_qconfig("qnnpack"), tq.default_qat_qconfig
    dyn = tq.default_dynamic_qat_qconfig
    lin = lambda: nn.Linear(6, 5)
    c2 = lambda bias=True: nn.Conv2d(3, 4, 3, padding=1, bias=bias)
    c1 = lambda bias=True: nn.Conv1d(3, 4, 3, padding=1, bias=bias)
    cases = [
        ("linear", lin, nnqat.Linear, fb, "train"),
        ("linear_eval", lin, nnqat.Linear, fb, "eval"),
        ("linear_default", lin, nnqat.Linear, dflt, "train"),
        ("linear_qnnpack", lin, nnqat.Linear, qn, "train"),
        ("dynamic_linear", lin, nnqatd.Linear, dyn, "train"),
        ("conv2d", c2, nnqat.Conv2d, fb, "train"),
        ("conv1d", c1, nnqat.Conv1d, fb, "train"),
        ("linear_relu", lambda: nni.LinearReLU(lin(), nn.ReLU()), nniqat.LinearReLU, fb, "train"),
        ("linear_bn1d", lambda: nni.LinearBn1d(lin(), nn.BatchNorm1d(5)), nniqat.LinearBn1d, fb, "train"),
        ("linear_bn1d_frozen", lambda: nni.LinearBn1d(lin(), nn.BatchNorm1d(5)), nniqat.LinearBn1d, fb, "frozen"),
        ("conv_bn2d", lambda: nni.ConvBn2d(c2(False), nn.BatchNorm2d(4)), nniqat.ConvBn2d, fb, "train"),
        ("conv_bn2d_bias", lambda: nni.ConvBn2d(c2(True), nn.BatchNorm2d(4)), nniqat.ConvBn2d, fb, "train"),
        ("conv_bn2d_frozen", lambda: nni.ConvBn2d(c2(False), nn.BatchNorm2d(4)), nniqat.ConvBn2d, fb, "frozen"),
        ("conv_bn2d_eval", lambda: nni.ConvBn2d(c2(False), nn.BatchNorm2d(4)), nniqat.ConvBn2d, fb, "eval"),
        ("conv_bn_relu2d", lambda: nni.ConvBnReLU2d(c2(False), nn.BatchNorm2d(4), nn.ReLU()), nniqat.ConvBnReLU2d, fb, "train"),
        ("conv_bn_relu2d_frozen", lambda: nni.ConvBnReLU2d(c2(False), nn.BatchNorm2d(4), nn.ReLU()), nniqat.ConvBnReLU2d, fb, "frozen"),
        ("conv_bn_relu2d_qnnpack", lambda: nni.ConvBnReLU2d(c2(True), nn.BatchNorm2d(4), nn.ReLU()), nniqat.ConvBnReLU2d, qn, "train"),
        ("conv_relu2d", lambda: nni.ConvReLU2d(c2(), nn.ReLU()), nniqat.ConvReLU2d, fb, "train"),
        ("conv_bn1d", lambda: nni.ConvBn1d(c1(False), nn.BatchNorm1d(4)), nniqat.ConvBn1d, fb, "train"),
        ("conv_bn_relu1d", lambda: nni.ConvBnReLU1d(c1(True), nn.BatchNorm1d(4), nn.ReLU()), nniqat.ConvBnReLU1d, fb, "train"),
        ("conv_relu1d", lambda: nni.ConvReLU1d(c1(), nn.ReLU()), nniqat.ConvReLU1d, fb, "frozen"),
    ]
    return cases


def qat_modules(fx):
    """Each QAT module made by from_float from a seeded float module, run 3 forward +
    backward steps (grads accumulate, as without zero_grad) in its mode: train, eval,
    or frozen (train + freeze_bn_stats). Stores the float state (<c>.float.*), each
    step's input/upstream gradient/output/input gradient (<c>.x0, g0, y0, gx0 ...), the
    final state dict (<c>.state.*) and parameter gradients (<c>.grad.*), and the same
    from the float64 reference (qat_reference) under <c>.ref.*."""
    for name, mk, cls, qc, mode in _qat_cases():
        torch.manual_seed(zlib.crc32(name.encode()))
        r = Rand(zlib.crc32(name.encode()), torch.float32)
        f = mk()
        for mod in f.modules():  # BN with non-trivial state
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                with torch.no_grad():
                    mod.weight.copy_(r.uniform(0.5, 1.5, mod.num_features))
                    mod.bias.copy_(r.randn(mod.num_features, scale=0.1))
                    mod.running_mean.copy_(r.randn(mod.num_features, scale=0.1))
                    mod.running_var.copy_(r.uniform(0.5, 2.0, mod.num_features))
        for k, v in f.state_dict().items():
            fx.add(f"{name}.float.{k}", v)
        for mod in f.modules():  # from_float reads the qconfig of the fused module's parts too
            mod.qconfig = qc
        f.train()
        q = cls.from_float(f)
        if mode == "eval":
            q.eval()
        elif mode == "frozen":
            q.train()
            if hasattr(q, "freeze_bn_stats"):
                q.freeze_bn_stats()
        q64 = qat_reference(q)
        shape = (4, 6) if "linear" in name else (2, 3, 6, 6) if "2d" in name else (2, 3, 8)
        for step in range(3):
            x = r.randn(*shape, scale=1.5).requires_grad_(True)
            y = q(x)
            g = r.randn(*y.shape)
            y.backward(g)
            x64 = x.detach().double().requires_grad_(True)
            y64 = q64(x64)
            y64.backward(g.double())
            for k, v in (("x", x), ("g", g), ("y", y), ("gx", x.grad), ("ref.y", y64), ("ref.gx", x64.grad)):
                fx.add(f"{name}.{k}{step}", v)
        for pre, mod in (("", q), ("ref.", q64)):
            for k, v in mod.state_dict().items():
                fx.add(f"{name}.{pre}state.{k}", v)
            for k, p in mod.named_parameters():
                if p.grad is not None:
                    fx.add(f"{name}.{pre}grad.{k}", p.grad)
        fx.meta[f"mode.{name}"] = mode
        fx.cases.append(name)


class QatCNN(torch.nn.Module):
    """conv+bn+relu, pool, linear+relu, linear, between quant stubs."""

    def __init__(self):
        super().__init__()
        import torch.ao.quantization as tq
        nn = torch.nn
        self.quant = tq.QuantStub()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.l1 = nn.Linear(4 * 4 * 4, 16)
        self.relu2 = nn.ReLU()
        self.l2 = nn.Linear(16, 3)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.relu1(self.b1(self.c1(self.quant(x)))))
        x = self.relu2(self.l1(self.flatten(x)))
        return self.dequant(self.l2(x))


def qat_cnn(fx):
    """The small CNN fused ((c1, b1, relu1), (l1, relu2)), prepared with the fbgemm
    qconfig and trained 5 SGD steps (lr 0.05, momentum 0.9, weight decay 1e-4) with
    cross-entropy: qat_cnn_float.safetensors holds the float weights PyTorch wrote;
    this file the batches, the per-step losses, the fused blocks' fake-quantized outputs
    and the prepared model's final state; under ref.* the losses, activation scales and
    final state of the float64 reference (qat_reference) trained alongside."""
    import torch.ao.quantization as tq
    torch.manual_seed(7)
    m = QatCNN().train()
    write_safetensors(os.path.join(fx.out_dir, "qat_cnn_float.safetensors"), dict(m.state_dict()), {"format": "pt"})
    m = tq.fuse_modules_qat(m, [["c1", "b1", "relu1"], ["l1", "relu2"]])
    m.qconfig = tq.get_default_qat_qconfig("fbgemm")
    tq.prepare_qat(m, inplace=True)
    m64 = qat_reference(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    opt64 = torch.optim.SGD(m64.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    # the fake-quantized outputs of the fused blocks (their activation_post_process
    # hooks run first) and those fake-quants' scales, per step: act.<block><step>
    acts = {}
    for blk in ("c1", "l1"):
        getattr(m, blk).register_forward_hook(lambda mod, i, o, blk=blk: acts.__setitem__(blk, o.detach().clone()))
    g = torch.Generator().manual_seed(8)
    for step in range(5):
        x = torch.randn(8, 1, 8, 8, generator=g)
        t = torch.randint(0, 3, (8,), generator=g)
        loss = torch.nn.functional.cross_entropy(m(x), t)
        for blk in ("c1", "l1"):
            fx.add(f"act.{blk}{step}", acts[blk])
            fx.add(f"act.{blk}{step}.scale", getattr(m, blk).activation_post_process.scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss64 = torch.nn.functional.cross_entropy(m64(x.double()), t)
        opt64.zero_grad()
        loss64.backward()
        opt64.step()
        fx.add(f"x{step}", x)
        fx.add(f"t{step}", t)
        fx.add(f"loss{step}", loss.detach())
        fx.add(f"ref.loss{step}", loss64.detach())
        for blk in ("c1", "l1"):
            fx.add(f"ref.act.{blk}{step}.scale", getattr(m64, blk).activation_post_process.scale)
    for pre, mod in (("", m), ("ref.", m64)):
        for k, v in mod.state_dict().items():
            fx.add(f"{pre}state.{k}", v)
    fx.cases.append("qat_cnn")


def qat_ops(fx):
    """Fake-quant ops, formulas A and B, and the fused observer + fake-quant of PyTorch
    1.13 (tests/test_fake_quant.c, tests/test_qparams.c). Every float input is float32
    unless the case name ends in _f64. Per case <c>:

    fq.<c>.x, .scale (f32 (C) or 0-dim), .zp (i32/f32 (C) or 0-dim i64), .cfg (i64:
      qmin, qmax, axis (-1 per tensor)), .out, .gout, .gx      fake_quantize_per_*
    lsq.<c>.x, .scale, .zp (f32 (1) or (C)), .cfg (i64: qmin, qmax, axis), .gf (f64 0-dim),
      .out, .gout, .gx, .gscale, .gzp                          _fake_quantize_learnable_*
    fused.<c>.cfg (i64: qmin, qmax, ch_axis, per_channel, symmetric, steps), .avg (f64);
      per step t: .<t>.flags (i64: observer_on, fake_quant_on), .<t>.x, .<t>.gout,
      .<t>.out, .<t>.gx and the buffers after the step .<t>.min, .<t>.max, .<t>.scale,
      .<t>.zp (per channel they start empty; per tensor at +inf / -inf, 1.0, 0)
    qpA.<c>.min, .max (f32 (n)), .scale, .zp (i64), .cfg (i64: qmin, qmax, symmetric,
      quint8, custom_range)                                    observer _calculate_qparams
    qpB.<c>.min, .max, .scale, .zp (i32), .cfg (i64: qmin, qmax, symmetric)
                                                               ChooseQuantizationParams
    """
    import warnings
    from torch.ao.quantization.observer import MinMaxObserver

    f32, f64, i32, i64 = torch.float32, torch.float64, torch.int32, torch.int64
    cases = []

    def add_all(prefix, d):
        for k, v in d.items():
            fx.add(f"{prefix}.{k}", v)
        fx.cases.append(prefix)

    # ---- fake_quantize_per_tensor / per_channel
    def fq_case(name, x, scale, zp, qmin, qmax, axis=-1):
        r = Rand(zlib.crc32(name.encode()), x.dtype)
        xg = x.detach().clone().requires_grad_()
        if axis < 0:
            y = torch.fake_quantize_per_tensor_affine(xg, float(scale), int(zp), qmin, qmax)
            sc_t, zp_t = torch.tensor(float(scale), dtype=f32), torch.tensor(int(zp), dtype=i64)
        else:
            y = torch.fake_quantize_per_channel_affine(xg, scale, zp, axis, qmin, qmax)
            sc_t, zp_t = scale, zp
        gout = r.randn(*x.shape)
        y.backward(gout)
        add_all("fq." + name, {"x": x, "scale": sc_t, "zp": zp_t, "cfg": torch.tensor([qmin, qmax, axis], dtype=i64),
                               "out": y, "gout": gout, "gx": xg.grad})

    ties = torch.tensor([-128.4, -128.5, -128.6, -127.5, -126.5, -1.5, -0.5, 0.5, 1.5, 2.5, 126.5, 127.4, 127.5,
                         127.6, 0.0, -0.0, 3.49999976, 3.50000024])
    fq_case("ties_s1", ties, 1.0, 0, -128, 127)
    k = torch.arange(-12, 270, dtype=f32) + 0.5  # x * 4 exactly k + 0.5
    fq_case("ties_pow2", k * 0.25, 0.25, 3, 0, 255)
    r = Rand(zlib.crc32(b"qat_fq_rand"), f32)
    s = 0.0173
    x = torch.cat([r.randn(200) * 1.3, (torch.arange(-5, 135, dtype=f32) + 0.5) * s, torch.tensor([0.0])])
    fq_case("rand_affine", x, s, 7, 0, 127)
    fq_case("rand_sym", x, s, 0, -128, 127)
    fq_case("bits4_u", x * 3, 0.21, 3, 0, 15)
    fq_case("bits4_s", x * 3, 0.19, 0, -8, 7)
    fq_case("special", torch.tensor([float("inf"), float("-inf"), float("nan"), 1e30, -1e30, 9.3e18, 9.2e18, 1e-40]),
            0.5, 3, 0, 255)
    fq_case("wide", torch.tensor([16777216.0, 16777218.0, 2147483520.0, 2147483647.0, 2147483904.0, -2147483648.0,
                                  -2147483904.0, 0.5, 1.5, -7.5]), 1.0, 1, -2 ** 31, 2 ** 31 - 1)
    fq_case("ties_s1_f64", ties.double(), 1.0, 0, -128, 127)
    fq_case("rand_affine_f64", x.double() * 1.0000001, s, 7, 0, 127)
    # per channel: axis 0 (weights), axis 1 long and short rows, the last axis, float zero points
    r = Rand(zlib.crc32(b"qat_fq_pc"), f32)
    sc4 = torch.tensor([0.02, 0.25, 0.0071, 0.5])
    w = r.randn(4, 3, 5) * 1.5
    w[1, 0, :] = (torch.arange(5, dtype=f32) + 120.5) * 0.25  # ties at the top of the range
    fq_case("pc_axis0", w, sc4, torch.tensor([0, -3, 5, 127], dtype=i32), -128, 127, 0)
    sc6 = torch.tensor([0.01, 0.02, 0.05, 0.125, 0.0033, 1.0])
    a = r.randn(2, 6, 5)
    a[:, 3, :] = (torch.arange(10, dtype=f32).reshape(2, 5) - 4.5) * 0.125
    fq_case("pc_axis1", a, sc6, torch.tensor([0, 10, 128, 3, 255, 60], dtype=i32), 0, 255, 1)
    fq_case("pc_last", r.randn(7, 6), sc6, torch.tensor([0, 1, 2, 3, 4, 5], dtype=i32), 0, 15, 1)
    fq_case("pc_long", r.randn(3, 2, 40) * 0.3, torch.tensor([0.011, 0.0047]), torch.tensor([100, 27], dtype=i32),
            0, 255, 1)
    fq_case("pc_float_zp", a, sc6, torch.tensor([0.5, 10.25, -3.7, 3.0, 200.5, 60.1]), 0, 255, 1)
    fq_case("pc_axis0_f64", w.double(), sc4, torch.tensor([0, -3, 5, 127], dtype=i32), -128, 127, 0)

    # ---- learnable (LSQ)
    def lsq_case(name, x, scale, zp, qmin, qmax, axis=-1, grad_scaling=False):
        rr = Rand(zlib.crc32(name.encode()), f32)
        xg, sg, zg = (t.detach().clone().requires_grad_() for t in (x, scale, zp))
        gf = 1.0 / (x.numel() * qmax) ** 0.5 if grad_scaling else 1.0
        if axis < 0:
            y = torch._fake_quantize_learnable_per_tensor_affine(xg, sg, zg, qmin, qmax, gf)
        else:
            y = torch._fake_quantize_learnable_per_channel_affine(xg, sg, zg, axis, qmin, qmax, gf)
        gout = rr.randn(*x.shape)
        y.backward(gout)
        add_all("lsq." + name, {"x": x, "scale": scale, "zp": zp, "cfg": torch.tensor([qmin, qmax, axis], dtype=i64),
                                "gf": torch.tensor(gf, dtype=f64), "out": y, "gout": gout, "gx": xg.grad,
                                "gscale": sg.grad, "gzp": zg.grad})

    r = Rand(zlib.crc32(b"qat_lsq"), f32)
    x = r.randn(4, 50) * 2.0
    x[0, :20] = (torch.arange(20, dtype=f32) - 10 + 0.5) * 0.0625  # near-ties
    lsq_case("pt_u8", x, torch.tensor([0.03]), torch.tensor([2.5]), 0, 255)
    lsq_case("pt_u8_gs", x, torch.tensor([0.03]), torch.tensor([2.5]), 0, 255, grad_scaling=True)
    lsq_case("pt_s8", x, torch.tensor([0.011]), torch.tensor([-1.7]), -128, 127)
    lsq_case("pt_u4_gs", x, torch.tensor([0.21]), torch.tensor([3.5]), 0, 15, grad_scaling=True)
    lsq_case("pt_s4", x, torch.tensor([0.0625]), torch.tensor([-2.5]), -8, 7)
    lsq_case("pc_axis0", r.randn(3, 40), torch.tensor([0.02, 0.05, 0.3]), torch.tensor([0.5, -1.5, 2.49]), -8, 7, 0)
    lsq_case("pc_axis0_gs", r.randn(3, 40), torch.tensor([0.02, 0.05, 0.3]), torch.tensor([0.5, -1.5, 2.49]), -8, 7, 0,
             grad_scaling=True)
    lsq_case("pc_axis1", r.randn(5, 4, 6), torch.tensor([0.01, 0.1, 0.004, 0.05]), torch.tensor([128.5, 3.2, 0.0, 255.0]),
             0, 255, 1, grad_scaling=True)
    # one element per channel: the summed gradients are PyTorch's per-element terms
    sc = r.uniform(0.01, 0.3, 48)
    zr = torch.round(r.uniform(-8, 7, 48) * 4) / 4  # quarters: .5 ties included
    xe = (torch.round(r.uniform(-12, 12, 48)) + torch.tensor([0.0, 0.5, -0.5, 0.25]).repeat(12)) * sc
    lsq_case("pc_elem", xe.reshape(48, 1), sc, zr, -8, 7, 0, grad_scaling=True)

    # ---- fused moving-average observer + fake-quant, several steps
    def fused_case(name, shape, qmin, qmax, ch_axis, per_channel, symmetric, flags, make):
        rr = Rand(zlib.crc32(name.encode()), f32)
        if per_channel:
            mn, mx, sc, zp = torch.tensor([]), torch.tensor([]), torch.tensor([1.0]), torch.tensor([0], dtype=i32)
        else:
            mn, mx = torch.tensor(float("inf")), torch.tensor(float("-inf"))
            sc, zp = torch.tensor([1.0]), torch.tensor([0], dtype=i32)
        avg = 0.01
        fx.add(f"fused.{name}.cfg", torch.tensor([qmin, qmax, ch_axis, int(per_channel), int(symmetric), len(flags)],
                                                 dtype=i64))
        fx.add(f"fused.{name}.avg", torch.tensor(avg, dtype=f64))
        for t, (obs, fq) in enumerate(flags):
            x = make(rr, t).reshape(shape)
            xg = x.clone().requires_grad_()
            y = torch.fused_moving_avg_obs_fake_quant(xg, torch.tensor([obs]), torch.tensor([fq]), mn, mx, sc, zp, avg,
                                                      qmin, qmax, ch_axis, per_channel, symmetric)
            gout = rr.randn(*shape)
            y.backward(gout)
            for k, v in {"flags": torch.tensor([obs, fq], dtype=i64), "x": x, "gout": gout, "out": y, "gx": xg.grad,
                         "min": mn, "max": mx, "scale": sc, "zp": zp}.items():
                fx.add(f"fused.{name}.{t}.{k}", v)
        fx.cases.append("fused." + name)

    steps = [(1, 1), (1, 1), (1, 1), (0, 1), (1, 0), (1, 1), (0, 0), (1, 1)]
    act = lambda rr, t: rr.randn(2 * 3 * 6 * 6) * (1 + 0.3 * t) + 0.2 * t
    fused_case("pt_affine_rr", (2, 3, 6, 6), 0, 127, -1, False, False, steps, lambda rr, t: act(rr, t).relu() - 0.01 * t)
    fused_case("pt_sym", (6, 12), -128, 127, -1, False, True, steps, lambda rr, t: rr.randn(72) * 0.1)

    def weights(rr, t):
        w = rr.randn(8, 3, 3, 3) * 0.2
        w[2] = w[2].abs() + 0.01  # an all-positive channel
        w[5] = -w[5].abs() - 0.02  # an all-negative one
        w[6] = 0.0 if t == 0 else w[6] * 1e-6  # all zero, then tiny
        return w
    fused_case("pc_sym_axis0", (8, 3, 3, 3), -128, 127, 0, True, True, steps, weights)
    fused_case("pc_affine_axis0", (8, 3, 3, 3), 0, 255, 0, True, False, steps[:5], weights)

    # ---- formula A (observer) and B (ChooseQuantizationParams) on the same ranges
    pairs = [(-1.0, 1.0), (-0.5, 2.0), (-3.0, 0.25), (0.1, 2.0), (0.0, 5.0), (1e-3, 1e-3), (-2.0, -0.5), (-4.0, 0.0),
             (0.0, 0.0), (-1e-7, 1e-7), (0.0, 1e-9), (-1e-9, 0.0), (-3e-6, 2e-6), (0.0, 1e-6), (-1e-6, 0.0),
             (-1e-5, 3e-5), (5e-6, 7e-6), (-0.0123, 3.456), (-127.0, 128.0), (-128.0, 127.0), (-6.1e-5, 6.1e-5),
             (-1e30, 1e30), (1e-30, 1e-20), (-0.7, 0.7000001), (-2.0, 1.0)]
    rr = Rand(zlib.crc32(b"qat_qparams"), f32)
    rnd = [tuple(sorted((a, b))) for a, b in zip((rr.randn(40) * 3).tolist(), (rr.randn(40) * 3).tolist())]
    mins = torch.tensor([p[0] for p in pairs + rnd], dtype=f32)
    maxs = torch.tensor([p[1] for p in pairs + rnd], dtype=f32)
    confA = {  # name: (dtype, qscheme, reduce_range, custom range or None)
        "u8_affine": (torch.quint8, torch.per_tensor_affine, False, None),
        "u8_affine_rr": (torch.quint8, torch.per_tensor_affine, True, None),
        "u8_affine_custom_rr": (torch.quint8, torch.per_tensor_affine, True, (0, 255)),
        "s8_affine": (torch.qint8, torch.per_tensor_affine, False, None),
        "s8_sym": (torch.qint8, torch.per_tensor_symmetric, False, None),
        "s8_sym_rr": (torch.qint8, torch.per_tensor_symmetric, True, None),
        "u8_sym": (torch.quint8, torch.per_tensor_symmetric, False, None),
        "u8_sym_custom": (torch.quint8, torch.per_tensor_symmetric, False, (0, 255)),
        "u4_affine": (torch.quint8, torch.per_tensor_affine, False, (0, 15)),
        "u4_sym": (torch.quint8, torch.per_tensor_symmetric, False, (0, 15)),
        "s4_sym": (torch.qint8, torch.per_tensor_symmetric, False, (-8, 7)),
        "s4_affine": (torch.qint8, torch.per_tensor_affine, False, (-8, 7)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (dt, qs, rr_, custom) in confA.items():
            kw = dict(dtype=dt, qscheme=qs, reduce_range=rr_)
            if custom:
                kw.update(quant_min=custom[0], quant_max=custom[1])
            ob = MinMaxObserver(**kw)
            sc, zp = ob._calculate_qparams(mins, maxs)
            sym = qs == torch.per_tensor_symmetric
            add_all("qpA." + name, {"min": mins, "max": maxs, "scale": sc, "zp": zp.to(i64),
                                    "cfg": torch.tensor([ob.quant_min, ob.quant_max, int(sym), int(dt == torch.quint8),
                                                         int(custom is not None)], dtype=i64)})
    confB = {"affine_u8": (0, 255, False), "affine_rr": (0, 127, False), "affine_s8": (-128, 127, False),
             "sym_s8": (-128, 127, True), "sym_u8": (0, 255, True), "sym_rr": (-64, 63, True),
             "affine_u4": (0, 15, False), "sym_s4": (-8, 7, True), "sym_u4": (0, 15, True)}
    n = mins.numel()
    for name, (qmin, qmax, sym) in confB.items():
        mn, mx = mins.clone(), maxs.clone()
        sc, zp = torch.ones(n), torch.zeros(n, dtype=i32)
        torch.fused_moving_avg_obs_fake_quant(torch.zeros(n, 1), torch.tensor([0]), torch.tensor([1]), mn, mx, sc, zp,
                                              0.01, qmin, qmax, 0, True, sym)
        add_all("qpB." + name, {"min": mins, "max": maxs, "scale": sc, "zp": zp,
                                "cfg": torch.tensor([qmin, qmax, int(sym)], dtype=i64)})


def _no_ties(a, b):
    """a moved at least 0.05 from b (broadcast), so maximum/minimum have no ties."""
    return [b + away(a - b, [0.0]), b]


FILES = {
    "autograd_ops": autograd_ops,
    "nn_layers": nn_layers,
    "small_cnn": small_cnn,
    "qat_modules": qat_modules,
    "qat_cnn": qat_cnn,
    "optim": optim,
    "qat_ops": qat_ops,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="fixture files to write (default: all of %s)" % ", ".join(FILES))
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--list", action="store_true", help="print the case names instead of writing")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for name in args.files or FILES:
        if name not in FILES:
            sys.exit("unknown fixture file %r (known: %s)" % (name, ", ".join(FILES)))
        fx = Fixture(name, args.out_dir)
        FILES[name](fx)
        if args.list:
            print("%s: %s" % (name, " ".join(fx.cases)))
            continue
        path = os.path.join(args.out_dir, name + ".safetensors")
        meta = {"generator": "tools/gen_fixtures.py", "file": name, "torch": torch.__version__,
                "cases": str(len(fx.cases)), **fx.meta}
        write_safetensors(path, fx.tensors, meta)
        print("wrote %s: %d cases, %d tensors, %d bytes" % (os.path.relpath(path), len(fx.cases), len(fx.tensors),
                                                              os.path.getsize(path)))


if __name__ == "__main__":
    main()
