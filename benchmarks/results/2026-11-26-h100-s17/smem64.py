"""hopper_compile's check for float32 inputs at D = 64 and chunks of 128 (narrow and full tiles)."""
import multiprocessing, os, sys
sys.path.insert(0, "tests"); sys.path.insert(0, "src")
import hopper_compile as hc
import torch
from triton.runtime.jit import JITFunction
from longmix.kernels.triton import chunk
JITFunction.run = hc._record
os.environ["TRITON_INTERPRET"] = "1"
gen = torch.Generator().manual_seed(0)
for D in (64, 128):
  for C in (64, 128):
    for mp in (256, 1):
        chunk.CONFIG["state_min_programs"] = mp
        for gate in (None, "scalar", "key"):
            for delta in (False, True):
                B, T, H = 2, 150, 2
                g_ = lambda x: x.requires_grad_()
                q, k, v = (g_(torch.randn(B, T, H, D, generator=gen)) for _ in range(3))
                g = None if gate is None else g_(-torch.rand(*(B, T, H) if gate == "scalar" else (B, T, H, D), generator=gen))
                beta = g_(torch.rand(B, T, H, generator=gen)) if delta else None
                o, S = chunk.chunk(q, k, v, g, beta, g_(torch.zeros(B, H, D, D)), chunk_size=C)
                (o.sum() + S.sum()).backward()
del os.environ["TRITON_INTERPRET"]
items = list(hc.launches.values())
with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
    errors = pool.map(hc._compile, range(len(items)), chunksize=1)
for e in errors:
    if e: print(e.splitlines()[0][:300], e.splitlines()[1][:100])
print(len(items), "launches,", sum(1 for e in errors if e), "failed")
