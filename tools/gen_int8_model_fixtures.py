#!/usr/bin/python3
"""Whole-model int8 fixtures: examples/fmnist's QAT models converted by PyTorch 1.13.

    /usr/bin/python3 tools/gen_int8_model_fixtures.py --fmnist build/examples/fmnist

For the CNN and the MLP: trains the QAT model with qgrad's fmnist (fbgemm qconfig,
seed 1, 2 threads, --steps below), loads the checkpoint into PyTorch's prepared model
(strict), converts it with torch.ao.quantization.convert under the onednn engine and
runs the 10,000 Fashion-MNIST test images (normalised as fmnist does). Writes
tests/fixtures/int8_models.safetensors with, per model M:
    M.ckpt.<key>     the QAT checkpoint (PyTorch's names)
    M.logits.int     U8 (10000, 10): int_repr of the last quantized layer's output
    M.logits.scale   F64 0-dim, M.logits.zp I64 0-dim
    M.pred           I64 (10000): PyTorch's int8 argmax;  M.pred_fq: the fake-quant model's
    M.acc            F64 (2): int8 and fake-quant test accuracy
Needs python3-torch and the dataset (dataset-fashion-mnist).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.ao.quantization as tq

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fmnist_parity import CNN, MLP, find, idx, read_safetensors  # noqa: E402
from fixtures.common import write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {"cnn": 600, "mlp": 600}


def prepared(cls):
    m = cls().train()
    m = tq.fuse_modules_qat(m, m.groups)
    m.qconfig = tq.get_default_qat_qconfig("fbgemm")
    tq.prepare_qat(m, inplace=True)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fmnist", default=os.path.join(ROOT, "build", "examples", "fmnist"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "int8_models.safetensors"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "onednn"
    X = idx(find(a.data, "t10k-images-idx3-ubyte")).astype(np.float32) / np.float32(255)
    Y = torch.from_numpy(idx(find(a.data, "t10k-labels-idx1-ubyte")).astype(np.int64))
    x = torch.from_numpy(((X - np.float32(0.2860)) / np.float32(0.3530)).astype(np.float32)).reshape(-1, 1, 28, 28)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, cls in (("cnn", CNN), ("mlp", MLP)):
            ckpt = os.path.join(tmp, kind + ".safetensors")
            subprocess.run([a.fmnist, "--model", kind, "--epochs", "1", "--steps", str(STEPS[kind]), "--threads", "2",
                            "--data", a.data, "--save", ckpt], check=True, stdout=subprocess.DEVNULL)
            state = read_safetensors(ckpt)
            m = prepared(cls)
            sd = type(m.state_dict())(state)
            sd._metadata = m.state_dict()._metadata
            m.load_state_dict(sd, strict=True)
            m.eval()
            m.apply(tq.disable_observer)
            with torch.no_grad():
                pred_fq = torch.cat([m(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
                q = tq.convert(m, inplace=False)
                last = q.l2 if kind == "cnn" else q.l3
                got = []
                h = last.register_forward_hook(lambda mod, inp, o: got.append(o))
                pred = torch.cat([q(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
                h.remove()
            logits = torch.cat([g.int_repr() for g in got])
            for k, v in state.items():
                out["%s.ckpt.%s" % (kind, k)] = v
            out[kind + ".logits.int"] = logits
            out[kind + ".logits.scale"] = torch.tensor(got[0].q_scale(), dtype=torch.float64)
            out[kind + ".logits.zp"] = torch.tensor(got[0].q_zero_point(), dtype=torch.int64)
            out[kind + ".pred"] = pred
            out[kind + ".pred_fq"] = pred_fq
            acc = [(pred == Y).double().mean().item(), (pred_fq == Y).double().mean().item()]
            out[kind + ".acc"] = torch.tensor(acc, dtype=torch.float64)
            print("%s: int8 accuracy %.2f%%, fake-quant %.2f%%, %d predictions differ" %
                  (kind, 100 * acc[0], 100 * acc[1], int((pred != pred_fq).sum())))
    write_safetensors(a.out, out, {"generator": "tools/gen_int8_model_fixtures.py", "torch": torch.__version__,
                                   "steps": str(STEPS)})


if __name__ == "__main__":
    main()
