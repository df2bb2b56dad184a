#!/usr/bin/python3
"""PyTorch 1.13 fixtures for qgrad's Adam and AdamW (tests/test_adam.c).

    /usr/bin/python3 tools/gen_adam_fixtures.py     # writes tests/fixtures/adam.safetensors

Deterministic (one thread, a generator seeded by a CRC of "adam"). Contents:

    init.<p>              initial parameters: w (3, 5), b (3), c (2), e (5, 13) float32,
                          d (2, 3), f (19) float64, in the optimizer's order w b c d e f
                          (e and f are long enough for PyTorch's vectorized loops)
    grad.<t>.<p>          the gradient of p at step t (0..9); c has none at steps 0..2
    <cfg>.<t>.<p>         the parameters after step t of configuration cfg (CONFIGS;
                          the keyword arguments are in the metadata under <cfg>)
    <cfg>.sd5.<key>       PyTorch's optimizer.state_dict() after step 5 (state[3] is
                          steps 0..4), flattened the way qg_adam_state_dict names it
    <cfg>.sd10.<key>      the same after step 10
"""
import json
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from gen_fixtures import OUT_DIR, Rand, write_safetensors  # noqa: E402

CONFIGS = {
    "adam_default": ("Adam", dict(lr=1e-3)),
    "adam_lr_betas_eps": ("Adam", dict(lr=0.1, betas=(0.8, 0.9), eps=1e-6)),
    "adam_wd": ("Adam", dict(lr=1e-2, weight_decay=0.1)),
    "adam_amsgrad": ("Adam", dict(lr=1e-2, amsgrad=True)),
    "adam_max_wd_ams": ("Adam", dict(lr=1e-2, weight_decay=0.1, amsgrad=True, maximize=True)),
    "adam_beta1_0": ("Adam", dict(lr=1e-2, betas=(0.0, 0.999))),
    "adamw_default": ("AdamW", dict(lr=1e-3)),
    "adamw_wd_ams": ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    "adamw_maximize": ("AdamW", dict(lr=1e-2, maximize=True)),
    "adamw_betas_0_wd_0": ("AdamW", dict(lr=5e-2, betas=(0.0, 0.0), weight_decay=0.0)),
}
SHAPES = {"w": ((3, 5), torch.float32), "b": ((3,), torch.float32), "c": ((2,), torch.float32),
          "d": ((2, 3), torch.float64), "e": ((5, 13), torch.float32), "f": ((19,), torch.float64)}
# grads of changing size, so that amsgrad's running maximum differs from exp_avg_sq
SCALES = [3.0, 1.0, 0.3, 2.0, 0.1, 1.0, 0.5, 4.0, 0.2, 1.0]


def flat_state_dict(opt, kind, steps):
    """opt.state_dict() as qg_adam_state_dict's flat keys."""
    sd = opt.state_dict()
    out = {}
    for i, st in sorted(sd["state"].items()):
        for k in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if k in st:
                out[f"state.{i}.{k}"] = st[k].clone()
    (g,) = sd["param_groups"]
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    u8 = lambda v: torch.tensor(int(v), dtype=torch.uint8)  # noqa: E731
    out["param_groups.0.lr"] = f64(g["lr"])
    out["param_groups.0.betas"] = f64(list(g["betas"]))
    out["param_groups.0.eps"] = f64(g["eps"])
    out["param_groups.0.weight_decay"] = f64(g["weight_decay"])
    out["param_groups.0.amsgrad"] = u8(g["amsgrad"])
    out["param_groups.0.maximize"] = u8(g["maximize"])
    out["param_groups.0.decoupled_weight_decay"] = u8(kind == "AdamW")  # the class
    out["param_groups.0.params"] = torch.tensor(g["params"], dtype=torch.int64)
    out["step_count"] = torch.tensor(steps, dtype=torch.int64)
    return out


def main():
    torch.set_num_threads(1)
    r = Rand(zlib.crc32(b"adam"), torch.float32)
    init = {k: r.randn(*s).to(dt) for k, (s, dt) in SHAPES.items()}
    grads = [{k: (r.randn(*s) * SCALES[t]).to(dt) for k, (s, dt) in SHAPES.items() if not (k == "c" and t < 3)}
             for t in range(10)]
    tensors, meta = {}, {"generator": "tools/gen_adam_fixtures.py", "torch": torch.__version__}
    for k, v in init.items():
        tensors[f"init.{k}"] = v.clone()
    for t, g in enumerate(grads):
        for k, v in g.items():
            tensors[f"grad.{t}.{k}"] = v.clone()
    for cfg, (kind, kw) in CONFIGS.items():
        ps = {k: v.clone().requires_grad_() for k, v in init.items()}
        opt = getattr(torch.optim, kind)(list(ps.values()), foreach=False, **kw)
        for t, g in enumerate(grads):
            for k, p in ps.items():
                p.grad = g[k].clone() if k in g else None
            opt.step()
            for k, p in ps.items():
                tensors[f"{cfg}.{t}.{k}"] = p.detach().clone()
            if t + 1 in (5, 10):
                for k, v in flat_state_dict(opt, kind, t + 1).items():
                    tensors[f"{cfg}.sd{t + 1}.{k}"] = v
        meta[cfg] = kind + json.dumps(kw)
    path = os.path.join(OUT_DIR, "adam.safetensors")
    write_safetensors(path, tensors, meta)
    print("wrote %s: %d configs, %d tensors, %d bytes" % (os.path.relpath(path), len(CONFIGS), len(tensors),
                                                          os.path.getsize(path)))


if __name__ == "__main__":
    main()
