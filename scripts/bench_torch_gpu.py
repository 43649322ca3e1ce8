#!/usr/bin/env python3
"""PyTorch side of `noiselab device-check` (src/cli/device_check.rs): the same operations on
the same kind of workload, timed the fastest idiomatic PyTorch way on one device (CUDA on
the GPU machine; `--device cpu` for a dry run), f32:

  fwd_bwd     loss and gradient over N images (autograd)
  per_sample  N × D per-sample gradient matrix (torch.func: vmap of grad)
  minibatch   N/20 × D minibatch gradient matrix (vmap of grad over groups of 20)
  hvp         one exact Hessian-vector product (double backprop)
  eigenpairs  top-k eigenpairs of H: scipy's ARPACK eigsh on double-backprop HVPs
  sharpness   expected sharpness: M forward passes at θ + N(0, δ² I) under no_grad
  test_eval   loss and accuracy on 1,000 test images

LeNet on FashionMNIST, VGG11 on CIFAR-10, the first N training images of the real subsets.
θ is PyTorch's default initialisation (seeded); noiselab compares its own θ with its f64
kernels, so only times are compared here. Prints `arch\\toperation\\tseconds\\tdetail`.

    python3 scripts/bench_torch_gpu.py [--device cuda] [--arch lenet,vgg11] [--repeats 5]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from torch_lenet import VGG11, LeNet, read_cifar, read_idx  # noqa: E402


def timer(device, repeats):
    def median(fn):
        times, detail = [], ""
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            detail = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2], detail
    return median


def data(arch, args, device):
    if arch == "lenet":
        d = Path(args.fashion)
        n = args.lenet_samples
        x = read_idx(d / "train-images-idx3-ubyte.gz", 0x803, 3)[1][: n * 784].reshape(n, 1, 28, 28)
        y = read_idx(d / "train-labels-idx1-ubyte.gz", 0x801, 1)[1][:n].astype(np.int64)
        xt = read_idx(d / "t10k-images-idx3-ubyte.gz", 0x803, 3)[1][: 1000 * 784].reshape(-1, 1, 28, 28)
        yt = read_idx(d / "t10k-labels-idx1-ubyte.gz", 0x801, 1)[1][:1000].astype(np.int64)
        model = LeNet()
    else:
        d = Path(args.cifar)
        n = args.vgg11_samples
        x, y = read_cifar(d / "data_batch_1.bin", n)
        xt, yt = read_cifar(d / "test_batch.bin", 1000)
        model = VGG11()
    t = lambda a: torch.tensor(np.ascontiguousarray(a), device=device)
    return model.to(device), t(x).float() / 255.0, t(y), t(xt).float() / 255.0, t(yt)


def bench(arch, args, device):
    torch.manual_seed(7)
    m, x, y, xt, yt = data(arch, args, device)
    n = len(y)
    params = list(m.parameters())
    d = sum(p.numel() for p in params)
    named = {k: p.detach() for k, p in m.named_parameters()}
    median = timer(device, args.repeats)
    rows = []

    def fwd_bwd():
        m.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        return f"loss {loss.item():.6f} over {n} images, D = {d}"
    rows.append(("fwd_bwd",) + median(fwd_bwd))

    def group_loss(p, xb, yb):
        return F.cross_entropy(functional_call(m, p, (xb,)), yb)

    def per_sample():
        g = vmap(grad(group_loss), in_dims=(None, 0, 0))(named, x.unsqueeze(1), y.unsqueeze(1))
        mat = torch.cat([t.reshape(n, -1) for t in g.values()], 1)
        return f"{mat.shape[0]} × {mat.shape[1]} per-sample gradient matrix"
    rows.append(("per_sample",) + median(per_sample))

    mb = 20 if n >= 20 else n
    k = n // mb

    def minibatch():
        xs = x[: k * mb].reshape(k, mb, *x.shape[1:])
        g = vmap(grad(group_loss), in_dims=(None, 0, 0))(named, xs, y[: k * mb].reshape(k, mb))
        mat = torch.cat([t.reshape(k, -1) for t in g.values()], 1)
        return f"{mat.shape[0]} × {mat.shape[1]} minibatch gradient matrix (m = {mb})"
    rows.append(("minibatch",) + median(minibatch))

    def hv(vec):
        loss = F.cross_entropy(m(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        flat = torch.cat([t.flatten() for t in g])
        h = torch.autograd.grad(flat @ vec, params)
        return torch.cat([t.flatten() for t in h])

    v = torch.randn(d, device=device)
    v /= v.norm()
    rows.append(("hvp",) + median(lambda: f"‖Hv‖ {hv(v).norm().item():.6e}"))

    def eigenpairs():
        count = [0]

        def mv(u):
            count[0] += 1
            vec = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32).reshape(-1)).to(device)
            return hv(vec).cpu().numpy()

        op = sla.LinearOperator((d, d), matvec=mv, dtype=np.float32)
        vals = np.sort(sla.eigsh(op, k=args.eigenpairs, which="LA", tol=1e-5)[0])[::-1]
        return f"top {args.eigenpairs}: {count[0]} HVPs, λ1 {vals[0]:.6e}"
    rows.append(("eigenpairs",) + timer(device, min(args.repeats, 3))(eigenpairs))

    theta = torch.nn.utils.parameters_to_vector(params).detach().clone()

    def sharpness():
        with torch.no_grad():
            base = F.cross_entropy(m(x), y).item()
            rises = []
            for _ in range(args.sharpness_samples):
                torch.nn.utils.vector_to_parameters(theta + 0.01 * torch.randn(d, device=device), params)
                rises.append(F.cross_entropy(m(x), y).item() - base)
            torch.nn.utils.vector_to_parameters(theta, params)
        r = np.array(rises)
        return f"M = {len(r)}: {r.mean():.4e} ± {r.std(ddof=1) / np.sqrt(len(r)):.1e}"
    rows.append(("sharpness",) + timer(device, min(args.repeats, 3))(sharpness))

    def test_eval():
        with torch.no_grad():
            logits = m(xt)
            loss = F.cross_entropy(logits, yt).item()
            acc = (logits.argmax(1) == yt).float().mean().item()
        return f"loss {loss:.4f}, accuracy {acc:.4f} on {len(yt)} test images"
    rows.append(("test_eval",) + median(test_eval))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--arch", default="lenet,vgg11")
    ap.add_argument("--fashion", default=str(ROOT.parent / "shared/data/fashion-mnist-subset"))
    ap.add_argument("--cifar", default=str(ROOT.parent / "shared/data/cifar10-subset"))
    ap.add_argument("--lenet-samples", type=int, default=1200)
    ap.add_argument("--vgg11-samples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sharpness-samples", type=int, default=1000)
    ap.add_argument("--eigenpairs", type=int, default=20)
    args = ap.parse_args()
    device = torch.device(args.device)
    # As candle's default: no TF32 in f32 matrix products.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# torch {torch.__version__} on {args.device} ({name})")
    print("arch\toperation\tseconds\tdetail")
    for arch in args.arch.split(","):
        for op, t, detail in bench(arch, args, device):
            print(f"{arch}\t{op}\t{t:.6f}\t{detail}", flush=True)


if __name__ == "__main__":
    main()
