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

The generators live in tools/fixtures/, one module per area: common.py (the writer,
Rand, Fixture, qat_reference), ops.py, nn.py, optim.py and qat.py. To add a fixture
file: write a function taking a Fixture in the area's module, add cases to it, and list
it in FILES below.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ under tools/fixtures/
import torch  # noqa: E402

from fixtures import nn, ops, optim, qat  # noqa: E402
# gen_adam_fixtures.py and fmnist_parity.py import these from here
from fixtures.common import OUT_DIR, Fixture, Rand, write_safetensors  # noqa: E402,F401

FILES = {
    "autograd_ops": ops.autograd_ops,
    "nn_layers": nn.nn_layers,
    "small_cnn": nn.small_cnn,
    "qat_modules": qat.qat_modules,
    "qat_cnn": qat.qat_cnn,
    "optim": optim.optim,
    "qat_ops": qat.qat_ops,
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
