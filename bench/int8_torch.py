#!/usr/bin/python3
"""PyTorch side of bench/int8: the fmnist CNN and MLP from the same checkpoint
(tests/fixtures/int8_models.safetensors), converted by PyTorch 1.13 under onednn, timed
on batches of 1 and 64 at 1 and 2 threads.

Prints one machine-readable line per cell,
    int8 <model> <batch> <threads> <median ms>
and notes as lines starting with '#'.

The inputs are bench/int8's: the first test images of DATA (Fashion-MNIST),
normalised as examples/fmnist trains, or N(0, 1) noise without them.

usage: python3 bench/int8_torch.py FIXTURE [iterations [DATA]]
"""
import os
import sys
import time

try:
    import torch
    import torch.ao.quantization as tq
except ImportError as e:
    print("# PyTorch not available: %s" % e)
    sys.exit(0)

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from fmnist_parity import CNN, MLP, idx, read_safetensors  # noqa: E402


def inputs(data, batch):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"):
        path = os.path.join(data, name) if data else ""
        if path and os.path.exists(path):
            im = torch.from_numpy(idx(path)[:batch].copy()).float().div(255.0)
            return im.sub(0.2860).div(0.3530).unsqueeze(1)
    return torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def main():
    fixture, iters = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 50
    data = sys.argv[3] if len(sys.argv) > 3 else None
    torch.backends.quantized.engine = "onednn"
    all_t = read_safetensors(fixture)
    for kind, cls in (("cnn", CNN), ("mlp", MLP)):
        m = cls().train()
        m = tq.fuse_modules_qat(m, m.groups)
        m.qconfig = tq.get_default_qat_qconfig("fbgemm")
        tq.prepare_qat(m, inplace=True)
        pre = kind + ".ckpt."
        sd = type(m.state_dict())({k[len(pre):]: v for k, v in all_t.items() if k.startswith(pre)})
        sd._metadata = m.state_dict()._metadata
        m.load_state_dict(sd, strict=True)
        m.eval()
        q = tq.convert(m, inplace=False)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for batch in (1, 64):
                x = inputs(data, batch)
                with torch.no_grad():
                    for _ in range(5):
                        q(x)
                    ts = []
                    for _ in range(iters):
                        t0 = time.perf_counter()
                        q(x)
                        ts.append(time.perf_counter() - t0)
                ts.sort()
                print("int8 %s %d %d %.6f" % (kind, batch, threads, 1e3 * ts[len(ts) // 2]))


if __name__ == "__main__":
    main()
