"""Which level of ``_gla``'s split (whole chunk / 16-row block / exact diagonal) a model's gates take:
the gate spans of GLA's and KDA's gates as a ``Mixer`` draws them at initialisation (d_model 512, 4 heads
of 128, x ~ N(0, 1), B = 2, T = 1024), against ``_gla.CONFIG["span_max"]``. CPU, Triton's interpreter:

    TRITON_INTERPRET=1 PYTHONPATH=src python benchmarks/results/2026-11-26-h200-per-key-one-product/gate_spans.py
"""
import torch

from longmix.kernels.triton import _gla
from longmix.kernels.triton._cumsum import chunk_cumsum
from longmix.models.mixer import Mixer

torch.manual_seed(0)
LIM, C, T = _gla.CONFIG["span_max"], 64, 1024
print(f"span_max {LIM}, chunk {C}, T {T}")
for name in ("gla", "kda"):
    m = Mixer(512, 4, name)
    with torch.no_grad():
        g = m.gate(torch.randn(2, T, 512)).view(2, T, m.H, m.D).float()
    G = chunk_cumsum(g, C, clamp=True)
    for BC in (C, 16):
        s = torch.stack([(G[:, t - 1] if t % C else torch.zeros_like(G[:, 0])) - G[:, t + BC - 1]
                         for t in range(0, T, BC)], 1)  # [B, blocks, H, D]
        fwd = s.amax(-1)  # the forward decides over all key dims
        bwd = s.unflatten(-1, (-1, _gla.CONFIG["bwd_bk"])).amax(-1)  # the backward per key tile
        print(f"{name:4s} {'chunks' if BC == C else '16-row blocks':13s} per-step gate mean {g.mean():.3f} "
              f"min {g.min():.2f} | span median {fwd.median():.1f} max {fwd.max():.1f} | "
              f"within span_max: forward {(fwd <= LIM).float().mean():.2f}, backward key tiles {(bwd <= LIM).float().mean():.2f}")
