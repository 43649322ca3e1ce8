#!/usr/bin/env python3
"""PyTorch CPU side of the LeNet benchmark (benches/networks.rs is noiselab's side).

Same workloads, shapes, θ (the test fixture's) and images (the first 1,200 of the real
FashionMNIST subset), each done the fastest idiomatic PyTorch way:
forward+backward with autograd; per-sample and 60×20 minibatch gradient matrices with
torch.func (vmap of grad over samples / over minibatches); exact HVP by double backprop;
top-20 Hessian eigenpairs with scipy's ARPACK eigsh on double-backprop HVPs (float32
with tol 1e-5, float64 with tol 1e-8); expected sharpness with M = 1000 forward passes at
θ + N(0, 0.01² I) under no_grad.
Prints `<name>\t<median seconds>\t<detail>` lines, as the Rust side.

    python3 scripts/bench_torch.py [--threads T] [--repeats R]
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
from torch_lenet import LeNet, read_idx  # noqa: E402
N = 1200


def median(fn, repeats):
    times, detail = [], ""
    for _ in range(repeats):
        t = time.perf_counter()
        detail = fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[repeats // 2], detail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = ROOT.parent / "shared/data/fashion-mnist-subset"
    x = torch.tensor(read_idx(data / "train-images-idx3-ubyte.gz", 0x803, 3)[1][: N * 784].reshape(N, 1, 28, 28) / 255.0)
    y = torch.tensor(read_idx(data / "train-labels-idx1-ubyte.gz", 0x801, 1)[1][:N].astype(np.int64))
    blob = np.fromfile(ROOT / "tests/fixtures/lenet_reference.f64", dtype="<f8")
    d = 11330
    theta, v = torch.tensor(blob[:d]), torch.tensor(blob[d:2 * d])
    print(f"# torch {torch.__version__}, LeNet, {N} images, {torch.get_num_threads()} threads")

    def model_at(dtype):
        m = LeNet().to(dtype)
        torch.nn.utils.vector_to_parameters(theta.to(dtype), m.parameters())
        return m

    m32, m64 = model_at(torch.float32), model_at(torch.float64)
    x32, x64 = x.float(), x.double()
    rows = []

    def fwd_bwd(m, xs):
        def run():
            m.zero_grad()
            loss = F.cross_entropy(m(xs), y)
            loss.backward()
            return f"loss {loss.item():.6f}"
        return run

    rows.append(("fwd_bwd_f32",) + median(fwd_bwd(m32, x32), args.repeats))
    rows.append(("fwd_bwd_f64",) + median(fwd_bwd(m64, x64), args.repeats))

    params32 = {k: p.detach() for k, p in m32.named_parameters()}

    def sample_loss(p, xi, yi):
        return F.cross_entropy(functional_call(m32, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    def per_sample():
        g = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params32, x32, y)
        mat = torch.cat([t.reshape(N, -1) for t in g.values()], 1)
        return f"{mat.shape[0]} × {mat.shape[1]}"

    rows.append(("per_sample_f32",) + median(per_sample, args.repeats))

    def batch_loss(p, xb, yb):
        return F.cross_entropy(functional_call(m32, p, (xb,)), yb)

    def minibatch_vmap():
        g = vmap(grad(batch_loss), in_dims=(None, 0, 0))(params32, x32.reshape(60, 20, 1, 28, 28), y.reshape(60, 20))
        mat = torch.cat([t.reshape(60, -1) for t in g.values()], 1)
        return f"{mat.shape[0]} × {mat.shape[1]} (vmap)"

    def minibatch_loop():
        out = []
        for b in range(60):
            m32.zero_grad()
            F.cross_entropy(m32(x32[20 * b:20 * b + 20]), y[20 * b:20 * b + 20]).backward()
            out.append(torch.cat([p.grad.flatten() for p in m32.parameters()]))
        return f"{len(out)} × {out[0].numel()} (loop)"

    a = median(minibatch_vmap, args.repeats)
    b = median(minibatch_loop, args.repeats)
    rows.append(("minibatch_60x20_f32",) + min(a, b))

    def hvp_of(m, xs, dtype):
        params = list(m.parameters())
        vv = v.to(dtype)

        def hv(vec):
            loss = F.cross_entropy(m(xs), y)
            g = torch.autograd.grad(loss, params, create_graph=True)
            flat = torch.cat([t.flatten() for t in g])
            h = torch.autograd.grad(flat @ vec, params)
            return torch.cat([t.flatten() for t in h])

        return hv, vv

    for name, m, xs, dt in [("hvp_f32", m32, x32, torch.float32), ("hvp_f64", m64, x64, torch.float64)]:
        hv, vv = hvp_of(m, xs, dt)
        rows.append((name,) + median(lambda: f"‖Hv‖ {hv(vv).norm().item():.6e}", args.repeats))

    def top20(m, xs, dt, np_dt, tol):
        hv, _ = hvp_of(m, xs, dt)

        def run():
            count = [0]

            def mv(u):
                count[0] += 1
                return hv(torch.from_numpy(np.ascontiguousarray(u, dtype=np_dt).reshape(-1))).numpy()

            op = sla.LinearOperator((d, d), matvec=mv, dtype=np_dt)
            vals = sla.eigsh(op, k=20, which="LA", tol=tol, return_eigenvectors=True)[0]
            vals = np.sort(vals)[::-1]
            return f"{count[0]} HVPs, λ1 {vals[0]:.6e}, λ20 {vals[19]:.6e}"

        return run

    rows.append(("top20_eig_f32",) + median(top20(m32, x32, torch.float32, np.float32, 1e-5), 1))
    rows.append(("top20_eig_f64",) + median(top20(m64, x64, torch.float64, np.float64, 1e-8), 1))

    def sharpness():
        gen = torch.Generator().manual_seed(0)
        base_theta = theta.float()
        with torch.no_grad():
            base = F.cross_entropy(m32(x32), y).item()
            rises = []
            for _ in range(1000):
                shifted = base_theta + 0.01 * torch.randn(d, generator=gen)
                torch.nn.utils.vector_to_parameters(shifted, m32.parameters())
                rises.append(F.cross_entropy(m32(x32), y).item() - base)
            torch.nn.utils.vector_to_parameters(base_theta, m32.parameters())
        r = np.array(rises)
        return f"1000 samples, {r.mean():.4e} ± {r.std(ddof=1) / np.sqrt(len(r)):.1e}"

    rows.append(("sharpness_m1000_f32",) + median(sharpness, 1))
    for name, t, detail in rows:
        print(f"{name}\t{t:.4f}\t{detail}")


if __name__ == "__main__":
    main()
