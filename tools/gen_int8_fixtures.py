#!/usr/bin/python3
"""PyTorch 1.13 fixtures for qgrad's int8 convert and integer kernels (docs/int8.md).

    /usr/bin/python3 tools/gen_int8_fixtures.py     # writes tests/fixtures/int8_layers.safetensors

Every case runs once per quantized engine E in (onednn, qnnpack), each (E, case) in a
fresh Python process: PyTorch 1.13's onednn kernels cache their primitives under a key
that leaves out the zero points, so a second call with the same shapes and scales but
other zero points in the same process reuses stale ones (docs/int8.md). All keys are

    <E>.<case>.<key>

and the safetensors metadata holds "<E>.<case>" -> the case's parameters as JSON (kind,
shapes, stride, padding, ...); "cases" lists the case names, "skipped" the (E, case)
pairs PyTorch refuses (qnnpack's 1x1 average pool). Keys per kind:

Weighted layers (kind linear, linear_relu, conv1d, conv2d, conv_relu1d, conv_relu2d,
conv_bn2d, conv_bn_relu2d, linear_bn1d: a float module, swapped to its QAT module
by from_float with the case's qconfig, run 3 training forward passes, set to eval and
converted by torch.ao.quantization.convert):
    qat.<k>           the QAT module's state_dict before convert, PyTorch's names
                      (weight, bias, bn.*, weight_fake_quant.{scale, zero_point,
                      activation_post_process.{min_val, max_val}, ...},
                      activation_post_process.*)
    post.<k>          the same state_dict after convert (convert runs the weight
                      fake-quant once more: its observer takes one more step)
    w.int             I8, the converted weight's int_repr (out, in/groups, k...)
    w.scale           F64 (C) per channel or (1) per tensor;  w.zp I64 likewise
    w.axis            I64 0-dim: 0 per channel, -1 per tensor
    w.qrange          I64 (2): the weight fake-quant's quant_min, quant_max
    bias              F32 (C), absent without bias (after BN folding for *_bn*)
    out.scale F64 0-dim, out.zp I64 0-dim     the converted module's output qparams
    x                 F32, the float input that was quantized
    x.int U8, x.scale F64 0-dim, x.zp I64 0-dim      the quint8 input fed to the module
    y.int U8, y.scale, y.zp                   the output (y.scale/zp equal out.*)
    cfg               I64, conv: (dim, in, out, groups, bias, relu, kernel..., stride...,
                      padding..., dilation...); linear: (in, out, bias, relu)
dynamic_linear (torch.ao.nn.qat.dynamic.Linear converted to quantized.dynamic.Linear):
    qat.*, w.int, w.scale, w.zp, w.axis, bias, x (F32), y (F32), cfg (in, out, bias)
quantize (nnq.Quantize from a QuantStub's observer):
    x F32, x64 F64 (the same values widened; PyTorch refuses float64 input),
    scale F64 0-dim, zp I64 0-dim, y.int U8
dequantize: x.int U8, x.scale, x.zp, y F32
relu, maxpool2d, avgpool2d, adaptive_avgpool2d, flatten (on a quint8 tensor):
    x.int, x.scale, x.zp, y.int, y.scale, y.zp, cfg (I64: kernel, stride, padding,
    dilation/ceil_mode/count_include_pad/divisor_override or the output size; see meta)

The output is deterministic: one thread per worker, each case seeded by a CRC of its
name, the file written by tools/fixtures/common.py's writer in a fixed key order.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from fixtures.common import OUT_DIR, write_safetensors  # noqa: E402

ENGINES = ("onednn", "qnnpack")

# ------------------------------------------------------------------ qconfigs


def qconfig(name):
    import torch.ao.quantization as tq
    from torch.ao.quantization.fake_quantize import FusedMovingAvgObsFakeQuantize as Fused
    from torch.ao.quantization.observer import MovingAverageMinMaxObserver as MA
    from torch.ao.quantization.observer import MovingAveragePerChannelMinMaxObserver as MAPC
    if name in ("fbgemm", "qnnpack"):
        return tq.get_default_qat_qconfig(name)
    # nbit<a>_<w>[_pt]: as qg_qconfig_nbit (activations quint8 [0, 2^a - 1], weights qint8
    # symmetric [-2^(w-1), 2^(w-1) - 1], per channel; _pt per tensor)
    parts = name[4:].split("_")
    a, w = int(parts[0]), int(parts[1])
    act = Fused.with_args(observer=MA, quant_min=0, quant_max=2 ** a - 1, dtype=torch.quint8,
                          qscheme=torch.per_tensor_affine)
    if len(parts) > 2 and parts[2] == "pt":
        wt = Fused.with_args(observer=MA, quant_min=-2 ** (w - 1), quant_max=2 ** (w - 1) - 1, dtype=torch.qint8,
                             qscheme=torch.per_tensor_symmetric)
    else:
        wt = Fused.with_args(observer=MAPC, quant_min=-2 ** (w - 1), quant_max=2 ** (w - 1) - 1, dtype=torch.qint8,
                             qscheme=torch.per_channel_symmetric, ch_axis=0)
    return tq.QConfig(activation=act, weight=wt)


# ------------------------------------------------------------------ cases
# weighted: (kind, qconfig, params); params: linear (in, out, bias, batch shape),
# conv (dim, in, out, kernel, stride, padding, dilation, groups, bias, spatial, batch)

L = "linear"
CASES = {
    "linear_fbgemm": (L, "fbgemm", dict(i=13, o=7, bias=True, batch=(5,))),
    "linear_qnnpack": (L, "qnnpack", dict(i=13, o=7, bias=True, batch=(5,))),
    "linear_nobias": (L, "fbgemm", dict(i=6, o=5, bias=False, batch=(4,))),
    "linear_3d": (L, "qnnpack", dict(i=9, o=4, bias=True, batch=(2, 3))),
    "linear_nbit4": (L, "nbit4_4", dict(i=11, o=6, bias=True, batch=(6,))),
    "linear_nbit4_pt": (L, "nbit4_4_pt", dict(i=11, o=6, bias=True, batch=(6,))),
    "linear_nbit2": (L, "nbit2_2", dict(i=10, o=3, bias=True, batch=(4,))),
    "linear_nbit8_4": (L, "nbit8_4", dict(i=17, o=5, bias=True, batch=(3,))),
    "linear_bigk": (L, "fbgemm", dict(i=1100, o=3, bias=True, batch=(2,), positive=True)),
    "linear_relu_fbgemm": ("linear_relu", "fbgemm", dict(i=12, o=8, bias=True, batch=(5,))),
    "linear_relu_qnnpack": ("linear_relu", "qnnpack", dict(i=12, o=8, bias=True, batch=(5,))),
    "linear_relu_nbit4": ("linear_relu", "nbit4_4", dict(i=12, o=8, bias=False, batch=(5,))),
    "linear_bn1d": ("linear_bn1d", "fbgemm", dict(i=8, o=6, bias=True, batch=(6,))),
    "conv2d_fbgemm": ("conv2d", "fbgemm", dict(i=3, o=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1, bias=True,
                                              sp=(6, 7), n=2)),
    "conv2d_qnnpack": ("conv2d", "qnnpack", dict(i=3, o=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1, bias=True,
                                                sp=(6, 7), n=2)),
    "conv2d_s2_nobias": ("conv2d", "fbgemm", dict(i=3, o=5, k=(3, 2), s=(2, 1), p=(0, 1), d=(1, 1), g=1, bias=False,
                                                 sp=(7, 6), n=2)),
    "conv2d_dil_groups": ("conv2d", "qnnpack", dict(i=4, o=6, k=(3, 3), s=(1, 2), p=(2, 1), d=(2, 1), g=2,
                                                   bias=True, sp=(7, 8), n=1)),
    "conv2d_depthwise": ("conv2d", "fbgemm", dict(i=4, o=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=4, bias=True,
                                                 sp=(5, 5), n=2)),
    "conv2d_1x1": ("conv2d", "qnnpack", dict(i=5, o=3, k=(1, 1), s=(1, 1), p=(0, 0), d=(1, 1), g=1, bias=True,
                                            sp=(4, 4), n=2)),
    "conv2d_nbit4": ("conv2d", "nbit4_4", dict(i=3, o=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1, bias=True,
                                              sp=(6, 6), n=2)),
    "conv2d_nbit4_pt": ("conv2d", "nbit4_4_pt", dict(i=3, o=4, k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1), g=1,
                                                    bias=True, sp=(7, 7), n=1)),
    "conv2d_nbit2": ("conv2d", "nbit2_2", dict(i=2, o=3, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1, bias=True,
                                              sp=(5, 5), n=1)),
    "conv_relu2d_fbgemm": ("conv_relu2d", "fbgemm", dict(i=3, o=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1,
                                                        bias=True, sp=(6, 6), n=2)),
    "conv_relu2d_qnnpack": ("conv_relu2d", "qnnpack", dict(i=3, o=4, k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1), g=1,
                                                          bias=True, sp=(7, 7), n=2)),
    "conv_bn2d": ("conv_bn2d", "fbgemm", dict(i=3, o=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1, bias=False,
                                             sp=(6, 6), n=2)),
    "conv_bn_relu2d": ("conv_bn_relu2d", "qnnpack", dict(i=3, o=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1,
                                                        bias=True, sp=(6, 6), n=2)),
    "conv1d_fbgemm": ("conv1d", "fbgemm", dict(i=3, o=4, k=(3,), s=(1,), p=(1,), d=(1,), g=1, bias=True, sp=(9,),
                                              n=2)),
    "conv1d_qnnpack": ("conv1d", "qnnpack", dict(i=3, o=4, k=(3,), s=(1,), p=(1,), d=(1,), g=1, bias=True, sp=(9,),
                                                n=2)),
    "conv1d_s2_d2_groups": ("conv1d", "fbgemm", dict(i=4, o=6, k=(3,), s=(2,), p=(2,), d=(2,), g=2, bias=False,
                                                    sp=(11,), n=2)),
    "conv1d_nbit4": ("conv1d", "nbit4_4", dict(i=3, o=5, k=(4,), s=(1,), p=(0,), d=(1,), g=1, bias=True, sp=(10,),
                                              n=1)),
    "conv_relu1d_fbgemm": ("conv_relu1d", "fbgemm", dict(i=3, o=4, k=(3,), s=(1,), p=(1,), d=(1,), g=1, bias=True,
                                                        sp=(8,), n=2)),
    "conv_relu1d_qnnpack": ("conv_relu1d", "qnnpack", dict(i=3, o=4, k=(5,), s=(2,), p=(2,), d=(1,), g=1,
                                                          bias=True, sp=(12,), n=2)),
    "dynamic_linear": ("dynamic_linear", "dynamic", dict(i=10, o=6, bias=True, batch=(4,))),
    "dynamic_linear_nobias": ("dynamic_linear", "dynamic", dict(i=7, o=5, bias=False, batch=(3,))),
    "quantize_fbgemm": ("quantize", "fbgemm", dict()),
    "quantize_qnnpack": ("quantize", "qnnpack", dict()),
    "quantize_nbit4": ("quantize", "nbit4_4", dict()),
    "quantize_ties": ("quantize_ties", None, dict()),
    "dequantize": ("dequantize", None, dict()),
    "relu": ("relu", None, dict()),
    "maxpool2d": ("maxpool2d", None, dict(k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1), ceil=False)),
    "maxpool2d_ceil_dil": ("maxpool2d", None, dict(k=(2, 3), s=(2, 1), p=(0, 1), d=(2, 1), ceil=True)),
    "avgpool2d": ("avgpool2d", None, dict(k=(2, 2), s=(2, 2), p=(0, 0), ceil=False, cip=True, div=0)),
    "avgpool2d_pad": ("avgpool2d", None, dict(k=(3, 3), s=(2, 2), p=(1, 1), ceil=False, cip=True, div=0)),
    "avgpool2d_nopadcount_ceil": ("avgpool2d", None, dict(k=(3, 2), s=(2, 2), p=(1, 1), ceil=True, cip=False,
                                                          div=0)),
    "avgpool2d_divisor": ("avgpool2d", None, dict(k=(3, 3), s=(1, 1), p=(1, 1), ceil=False, cip=True, div=5)),
    "avgpool2d_1x1": ("avgpool2d", None, dict(k=(1, 1), s=(1, 1), p=(0, 0), ceil=False, cip=True, div=0)),
    "adaptive_avgpool2d": ("adaptive_avgpool2d", None, dict(out=(3, 2))),
    "adaptive_avgpool2d_global": ("adaptive_avgpool2d", None, dict(out=(1, 1))),
    "adaptive_avgpool2d_up": ("adaptive_avgpool2d", None, dict(out=(7, 4))),
    "flatten": ("flatten", None, dict()),
}

# ------------------------------------------------------------------ the worker


def _float_module(kind, p):
    nn, nni = torch.nn, torch.nn.intrinsic
    if kind in ("linear", "linear_relu", "linear_bn1d", "dynamic_linear"):
        lin = nn.Linear(p["i"], p["o"], bias=p["bias"])
        if p.get("positive"):
            with torch.no_grad():
                lin.weight.uniform_(0.5, 1.0)
        if kind == "linear_relu":
            return nni.LinearReLU(lin, nn.ReLU())
        if kind == "linear_bn1d":
            return nni.LinearBn1d(lin, nn.BatchNorm1d(p["o"]))
        return lin
    dim = len(p["k"])
    conv = (nn.Conv1d if dim == 1 else nn.Conv2d)(p["i"], p["o"], p["k"], p["s"], p["p"], p["d"], p["g"], p["bias"])
    bn = (nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d)(p["o"])
    if kind in ("conv_relu1d", "conv_relu2d"):
        return (nni.ConvReLU1d if dim == 1 else nni.ConvReLU2d)(conv, nn.ReLU())
    if kind == "conv_bn2d":
        return nni.ConvBn2d(conv, bn)
    if kind == "conv_bn_relu2d":
        return nni.ConvBnReLU2d(conv, bn, nn.ReLU())
    return conv


def _qat_class(kind, dim):
    import torch.ao.nn.qat as nnqat
    import torch.ao.nn.qat.dynamic as nnqatd
    import torch.nn.intrinsic.qat as nniqat
    return {"linear": nnqat.Linear, "linear_relu": nniqat.LinearReLU, "linear_bn1d": nniqat.LinearBn1d,
            "dynamic_linear": nnqatd.Linear, "conv1d": nnqat.Conv1d, "conv2d": nnqat.Conv2d,
            "conv_relu1d": nniqat.ConvReLU1d, "conv_relu2d": nniqat.ConvReLU2d, "conv_bn2d": nniqat.ConvBn2d,
            "conv_bn_relu2d": nniqat.ConvBnReLU2d}[kind]


def _input_qparams(x, qc_name):
    """The quint8 qparams an activation observer of the qconfig would give x."""
    from torch.ao.quantization.observer import MinMaxObserver
    if qc_name is None or qc_name == "qnnpack":
        ob = MinMaxObserver(dtype=torch.quint8)
    elif qc_name == "fbgemm":
        ob = MinMaxObserver(dtype=torch.quint8, reduce_range=True)
    else:
        a = int(qc_name[4:].split("_")[0])
        ob = MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=2 ** a - 1)
    ob(x)
    s, z = ob.calculate_qparams()
    return float(s), int(z)


def _qtensor(out, pre, q):
    out[pre + ".int"] = q.int_repr()
    out[pre + ".scale"] = torch.tensor(q.q_scale(), dtype=torch.float64)
    out[pre + ".zp"] = torch.tensor(q.q_zero_point(), dtype=torch.int64)


def _weighted(name, kind, qc_name, p, g):
    import torch.ao.quantization as tq
    out = {}
    f = _float_module(kind, p)
    for mod in f.modules():  # BN with non-trivial state
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = mod.num_features
            with torch.no_grad():
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
    qc = tq.default_dynamic_qat_qconfig if kind == "dynamic_linear" else qconfig(qc_name)
    dim = len(p["k"]) if "k" in p else 0
    shape = tuple(p["batch"]) + (p["i"],) if "batch" in p else (p["n"], p["i"]) + tuple(p["sp"])
    scale = 0.5 if p.get("positive") else 1.5
    model = torch.nn.Sequential(f).train()
    if kind == "dynamic_linear":  # the QAT module by hand: prepare_qat would make it static
        for mod in f.modules():
            mod.qconfig = qc
        model[0] = _qat_class(kind, dim).from_float(f)
    else:  # prepare_qat adds the output fake-quant; 1.13 needs Conv1d, ConvReLU1d mapped by hand
        import torch.ao.nn.qat as nnqat
        import torch.ao.nn.quantized as nnq
        import torch.nn.intrinsic as nni
        import torch.nn.intrinsic.qat as nniqat
        import torch.nn.intrinsic.quantized as nniq
        from torch.ao.quantization.quantization_mappings import (get_default_qat_module_mappings,
                                                                 get_default_static_quant_module_mappings)
        qat_map = dict(get_default_qat_module_mappings())
        qat_map.update({torch.nn.Conv1d: nnqat.Conv1d, nni.ConvReLU1d: nniqat.ConvReLU1d})
        static_map = dict(get_default_static_quant_module_mappings())
        static_map.update({nnqat.Conv1d: nnq.Conv1d, nniqat.ConvReLU1d: nniq.ConvReLU1d})
        model.qconfig = qc
        tq.prepare_qat(model, mapping=qat_map, inplace=True)
    q = model[0]
    for _ in range(3):
        xs = torch.randn(*shape, generator=g) * scale
        if p.get("positive"):
            xs = xs.abs()
        model(xs)
    model.eval()
    for k, v in q.state_dict().items():
        out["qat." + k] = v.detach().clone()
    x = torch.randn(*shape, generator=g) * scale
    if p.get("positive"):
        x = x.abs()
    if kind == "dynamic_linear":
        import torch.ao.nn.quantized.dynamic as nnqd
        qm = nnqd.Linear.from_float(q)
    else:
        import copy
        model = copy.deepcopy(model)
        q = model[0]  # convert's from_float steps q's weight observer once more: kept as post.*
        qm = tq.convert(model, mapping=static_map, inplace=True)[0]
    for k, v in q.state_dict().items():
        out["post." + k] = v.detach().clone()
    w = qm.weight()
    out["w.int"] = w.int_repr()
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        out["w.scale"] = w.q_per_channel_scales().double()
        out["w.zp"] = w.q_per_channel_zero_points().long()
        out["w.axis"] = torch.tensor(w.q_per_channel_axis(), dtype=torch.int64)
    else:
        out["w.scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
        out["w.zp"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
        out["w.axis"] = torch.tensor(-1, dtype=torch.int64)
    wfq = q.weight_fake_quant if hasattr(q, "weight_fake_quant") else None
    if wfq is not None:
        out["w.qrange"] = torch.tensor([wfq.quant_min, wfq.quant_max], dtype=torch.int64)
    b = qm.bias()
    if b is not None:
        out["bias"] = b.detach().clone()
    if kind == "dynamic_linear":
        out["x"] = x
        out["y"] = qm(x).detach()
        out["cfg"] = torch.tensor([p["i"], p["o"], int(p["bias"])], dtype=torch.int64)
        return out
    out["out.scale"] = torch.tensor(float(qm.scale), dtype=torch.float64)
    out["out.zp"] = torch.tensor(int(qm.zero_point), dtype=torch.int64)
    sx, zx = _input_qparams(x, qc_name)
    xq = torch.quantize_per_tensor(x, sx, zx, torch.quint8)
    out["x"] = x
    _qtensor(out, "x", xq)
    _qtensor(out, "y", qm(xq))
    relu = int("relu" in kind)
    if dim:
        out["cfg"] = torch.tensor([dim, p["i"], p["o"], p["g"], int(p["bias"]), relu, *p["k"], *p["s"], *p["p"],
                                   *p["d"]], dtype=torch.int64)
    else:
        out["cfg"] = torch.tensor([p["i"], p["o"], int(p["bias"]), relu], dtype=torch.int64)
    return out


def _act(g, shape, s=0.037, z=None):
    """A random quint8 tensor."""
    zi = int(torch.randint(0, 256, (1,), generator=g)) if z is None else z
    qi = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return torch._make_per_tensor_quantized_tensor(qi, s, zi)


def _unweighted(name, kind, qc_name, p, g):
    import torch.ao.nn.quantized as nnq
    import torch.ao.quantization as tq
    nn = torch.nn
    out = {}
    if kind in ("quantize", "quantize_ties"):
        if kind == "quantize":
            stub = nn.Sequential(tq.QuantStub())
            stub.qconfig = qconfig(qc_name)
            tq.prepare_qat(stub, inplace=True)
            for _ in range(3):
                stub(torch.randn(4, 9, generator=g) * 1.3 + 0.2)
            qm = tq.convert(stub.eval())[0]
            s, z = float(qm.scale), int(qm.zero_point)
        else:
            s, z = 0.0625, 37  # a power of two: x / s exact, so every k + 0.5 is a tie
        x = torch.cat([torch.randn(120, generator=g) * 1.7,
                       (torch.arange(-45, 275, dtype=torch.float32) - z + 0.5) * s,  # ties across the range
                       torch.tensor([0.0, -0.0, 1e-30, 1e6, -1e6, float("inf"), float("-inf")])])
        if kind == "quantize_ties":
            x = torch.cat([x, torch.tensor([float("nan")])])
        qm = nnq.Quantize(s, z, torch.quint8)
        out["x"] = x
        out["x64"] = x.double()
        out["scale"] = torch.tensor(s, dtype=torch.float64)
        out["zp"] = torch.tensor(z, dtype=torch.int64)
        out["y.int"] = qm(x).int_repr()
        return out
    if kind == "dequantize":
        xq = _act(g, (3, 50), s=0.0123)
        _qtensor(out, "x", xq)
        out["y"] = nnq.DeQuantize()(xq)
        return out
    shape = (2, 3, 9, 8)
    xq = _act(g, shape)
    _qtensor(out, "x", xq)
    if kind == "relu":
        y = nn.ReLU()(xq)
        out["cfg"] = torch.tensor([], dtype=torch.int64)
    elif kind == "maxpool2d":
        y = nn.MaxPool2d(p["k"], p["s"], p["p"], p["d"], ceil_mode=p["ceil"])(xq)
        out["cfg"] = torch.tensor([*p["k"], *p["s"], *p["p"], *p["d"], int(p["ceil"])], dtype=torch.int64)
    elif kind == "avgpool2d":
        y = nn.AvgPool2d(p["k"], p["s"], p["p"], ceil_mode=p["ceil"], count_include_pad=p["cip"],
                         divisor_override=p["div"] or None)(xq)
        out["cfg"] = torch.tensor([*p["k"], *p["s"], *p["p"], int(p["ceil"]), int(p["cip"]), p["div"]],
                                  dtype=torch.int64)
    elif kind == "adaptive_avgpool2d":
        y = nn.AdaptiveAvgPool2d(p["out"])(xq)
        out["cfg"] = torch.tensor(list(p["out"]), dtype=torch.int64)
    elif kind == "flatten":
        y = nn.Flatten()(xq)
        out["cfg"] = torch.tensor([1, -1], dtype=torch.int64)
    _qtensor(out, "y", y)
    return out


def worker(engine, name, path):
    torch.set_num_threads(1)
    torch.backends.quantized.engine = engine
    seed = zlib.crc32(name.encode())
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    kind, qc_name, p = CASES[name]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind in ("quantize", "quantize_ties", "dequantize", "relu", "maxpool2d", "avgpool2d",
                        "adaptive_avgpool2d", "flatten"):
                out = _unweighted(name, kind, qc_name, p, g)
            else:
                out = _weighted(name, kind, qc_name, p, g)
        except RuntimeError as e:
            out = {"_error": str(e).splitlines()[0]}
    torch.save(out, path)


# ------------------------------------------------------------------ the driver


def run_case(engine, name, tmpdir):
    path = os.path.join(tmpdir, f"{engine}.{name}.pt")
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOG_minloglevel="3")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", engine, name, path], check=True,
                   env=env, stderr=subprocess.DEVNULL)
    return torch.load(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--worker", nargs=3, metavar=("ENGINE", "CASE", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from concurrent.futures import ThreadPoolExecutor
    jobs = [(e, n) for n in CASES for e in ENGINES]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as ex:
        results = list(ex.map(lambda en: run_case(en[0], en[1], tmp), jobs))
    tensors = {}
    meta = {"generator": "tools/gen_int8_fixtures.py", "torch": torch.__version__, "engines": ",".join(ENGINES),
            "cases": ",".join(CASES)}
    skipped = []
    for (engine, name), out in zip(jobs, results):
        if "_error" in out:
            skipped.append(f"{engine}.{name}: {out['_error']}")
            continue
        kind, qc_name, p = CASES[name]
        meta[f"{engine}.{name}"] = json.dumps({"kind": kind, "qconfig": qc_name, **p}, sort_keys=True)
        for k, v in out.items():
            tensors[f"{engine}.{name}.{k}"] = v
    meta["skipped"] = "; ".join(skipped)
    path = os.path.join(args.out_dir, "int8_layers.safetensors")
    write_safetensors(path, tensors, meta)
    print("wrote %s: %d cases x %d engines (%d skipped), %d tensors, %d bytes" % (
        os.path.relpath(path), len(CASES), len(ENGINES), len(skipped), len(tensors), os.path.getsize(path)))
    for s in skipped:
        print("  skipped", s)


if __name__ == "__main__":
    main()
