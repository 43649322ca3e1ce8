#!/usr/bin/env python3
"""PyTorch reference values for noiselab's LeNet (METHOD.md §4.3), written as a test fixture.

Computes, in float64 with PyTorch's own layers (F.conv2d, F.max_pool2d, F.linear,
F.cross_entropy), on the first 16 training images of the real FashionMNIST subset:
the logits, the mean loss, the full-batch gradient, an exact Hessian-vector product
(double backprop) and the gradients of two minibatches of 8, at PyTorch's default
initialisation (seed 0). noiselab's tests compare against the committed output, so
they need no PyTorch.

    pip install torch numpy
    python3 scripts/reference_lenet.py ../shared/data/fashion-mnist-subset tests/fixtures

Output: lenet_reference.json (metadata, labels, loss, logits) and lenet_reference.f64
(little-endian float64: theta, v, grad, hvp, batch_grads[0], batch_grads[1]; D each).
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_lenet import LeNet, read_idx  # noqa: E402

N = 16
BATCH = 8


def main():
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    (n, rows, cols), pixels = read_idx(data / "train-images-idx3-ubyte.gz", 0x803, 3)
    (_,), labels = read_idx(data / "train-labels-idx1-ubyte.gz", 0x801, 1)
    x = torch.tensor(pixels[: N * rows * cols].reshape(N, 1, rows, cols) / 255.0, dtype=torch.float64)
    y = torch.tensor(labels[:N].astype(np.int64))

    torch.manual_seed(0)
    model = LeNet().double()
    params = list(model.parameters())
    names = [name for name, _ in model.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in params])
    d = theta.numel()
    assert d == 11330, d
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(d, generator=gen, dtype=torch.float64)

    logits = model(x)
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    grad = torch.cat([g.flatten() for g in grads])
    hvp = torch.autograd.grad(grad @ v, params)
    hvp = torch.cat([h.flatten() for h in hvp])

    batch_grads = []
    for b in range(N // BATCH):
        sl = slice(b * BATCH, (b + 1) * BATCH)
        lb = F.cross_entropy(model(x[sl]), y[sl])
        batch_grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(lb, params)]))

    out.mkdir(parents=True, exist_ok=True)
    blob = torch.cat([theta, v, grad.detach(), hvp] + batch_grads).numpy().astype("<f8")
    blob.tofile(out / "lenet_reference.f64")
    meta = {
        "generated_by": "scripts/reference_lenet.py",
        "torch": torch.__version__,
        "images": "first %d of train-images-idx3-ubyte.gz in the FashionMNIST subset" % N,
        "parameter_names": names,
        "dim": d,
        "samples": N,
        "batch_size": BATCH,
        "labels": y.tolist(),
        "loss": loss.item(),
        "logits": logits.detach().tolist(),
        "layout": ["theta", "v", "grad", "hvp"] + ["batch_grad_%d" % b for b in range(N // BATCH)],
    }
    (out / "lenet_reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"D = {d}, loss = {loss.item():.12f}, |grad| = {grad.norm().item():.6e}, |Hv| = {hvp.norm().item():.6e}")


if __name__ == "__main__":
    main()
