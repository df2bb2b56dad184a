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

Cases named <c>_f64 are the same case in float64. Names starting with "_format." hold
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
    def __init__(self, name):
        self.name = name
        self.tensors = {}
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
            if out.requires_grad:
                gout = torch.randn(out.shape, generator=r.g, dtype=out.dtype)
                out.backward(gout)
                self.add(f"{cname}.gout", gout)
                for i, x in enumerate(ins):
                    if x.requires_grad:
                        self.add(f"{cname}.gin{i}", x.grad)
            self.cases.append(cname)


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
    c("to_f64", lambda r: [r.randn(3, 4), r.randn(3, 4).double()], lambda x, w: x.double() * w)
    # a small network: linear -> relu -> linear -> cross_entropy
    c("chain_mlp", lambda r: [r.randn(4, 6), r.randn(8, 6), r.randn(8), r.randn(3, 8), r.randn(3), r.randint(3, 4)],
      lambda x, w1, b1, w2, b2, t: F.cross_entropy(F.linear(torch.relu(F.linear(x, w1, b1)), w2, b2), t), f64=True)


def _no_ties(a, b):
    """a moved at least 0.05 from b (broadcast), so maximum/minimum have no ties."""
    return [b + away(a - b, [0.0]), b]


FILES = {
    "autograd_ops": autograd_ops,
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
        fx = Fixture(name)
        FILES[name](fx)
        if args.list:
            print("%s: %s" % (name, " ".join(fx.cases)))
            continue
        path = os.path.join(args.out_dir, name + ".safetensors")
        meta = {"generator": "tools/gen_fixtures.py", "file": name, "torch": torch.__version__,
                "cases": str(len(fx.cases))}
        write_safetensors(path, fx.tensors, meta)
        print("wrote %s: %d cases, %d tensors, %d bytes" % (os.path.relpath(path), len(fx.cases), len(fx.tensors),
                                                              os.path.getsize(path)))


if __name__ == "__main__":
    main()
