"""Compile, for Hopper (sm_90) and on the CPU, every Triton kernel launch that longmix's GPU calls make.

    python tests/hopper_compile.py [--all]   # run by tests/test_hopper_compile.py (no TRITON_INTERPRET)
    python tests/hopper_compile.py --ptx DIR # also write each launch's PTX to DIR (see below)

The interpreter tests (test_triton.py) run each kernel's Python body, which accepts code that Triton's
compiler refuses (a reassigned constexpr, a loop-carried value that changes type, an unsupported
construct). Triton's compiler and the ptxas it ships need no GPU. So this script drives the host code of
every kernel path on CPU tensors: the chunkwise forward and backward for each gate and the delta rule,
alone and with packed documents (device-side bounds, so the chunk-map kernels run too), then with the
state passes in segments and at the full tiles that many sequences get (few get narrow ones), the decoding
kernel with its feature maps and norm, and linear attention's normaliser. A patched ``JITFunction.run``
records each launch instead of running it; the kernels' outputs stay uninitialised (the one host
read of one, the packed-document bounds check, is switched off). Each distinct launch (kernel,
argument types, constexprs, warps, stages) is then compiled to a cubin for sm_90, without the
launcher's integer specialisations (a 1, a multiple of 16), which change the code little, but with its
pointers' 16-byte alignment, without which no tile load is pipelined and shared memory is underestimated. Exit
status 1 and the compiler's message on any failure, or where a kernel needs more shared memory than
Hopper gives a block (a launch there would fail). It checks compilation only: whether the
compiled code computes the right thing is for the GPU tests (tests/test_cuda.py).

``--ptx DIR`` writes each launch's PTX, without its debug lines, to DIR/<index>_<kernel>.ptx (the launches
in the order they were recorded). Two trees whose files are identical (``diff -r``) compile to the same code,
so a refactor that leaves them so keeps the GPU verification of the kernels it touches.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("run without TRITON_INTERPRET: the interpreter replaces the kernels this script compiles")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
SHARED_MAX = 232448  # bytes of shared memory one block may use on an H100 / H200 (227 KiB)
OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")
DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp64",
          torch.int32: "i32", torch.int64: "i64", torch.bool: "i1", torch.uint8: "u8", torch.int8: "i8"}
launches: dict = {}
PTX_DIR = sys.argv[sys.argv.index("--ptx") + 1] if "--ptx" in sys.argv else None


def _record(self, *args, grid, warmup, **kwargs):
    """Stand-in for ``JITFunction.run``: note the launch's signature, run nothing."""
    bound = dict(zip(self.arg_names, args))
    bound.update({n: v for n, v in kwargs.items() if n not in OPTIONS})
    opts = {n: v for n, v in kwargs.items() if n in OPTIONS}
    signature, constexprs = {}, {}
    for p in self.params:
        value = bound.get(p.name, p.default)
        if p.is_constexpr or value is None:
            signature[p.name] = "constexpr"
            constexprs[p.name] = value
        elif isinstance(value, torch.Tensor):
            signature[p.name] = "*" + DTYPES[value.dtype]
        elif isinstance(value, bool):
            signature[p.name] = "i1"
        elif isinstance(value, int):
            signature[p.name] = "i32" if -2 ** 31 <= value < 2 ** 31 else "i64"
        elif isinstance(value, float):
            signature[p.name] = "fp32"
        else:
            raise TypeError(f"{self.fn.__name__}: argument {p.name} of type {type(value).__name__}")
    key = (self.fn.__module__, self.fn.__name__, tuple(signature.items()),
           tuple((n, repr(v)) for n, v in constexprs.items()), tuple(sorted(opts.items())))
    launches.setdefault(key, (self, signature, constexprs, opts))


def _drive(full: bool) -> None:
    """The kernel paths of the chunkwise, decoding and normaliser code, on CPU tensors: bf16 inputs, each
    gate with and without the delta rule, packed documents with per-key gates and the delta rule (``full``:
    float32 inputs too, and packed documents for every combination)."""
    from longmix import checks
    from longmix.kernels.triton import _delta, _gla, _varlen, chunk, normalizer, recurrent

    _varlen.READ_HOST_BOUNDS = False  # build the chunk map on the device, as for bounds on a GPU
    checks.cu_seqlens_values = lambda *args: None  # it reads a kernel's (here unwritten) count of bad bounds
    gen = torch.Generator().manual_seed(0)
    B, T, H, D = 2, 150, 2, 128
    grad = lambda x: x.requires_grad_()  # noqa: E731
    for dtype in (torch.bfloat16, torch.float32) if full else (torch.bfloat16,):
        for gate in (None, "scalar", "key"):
            for delta in (False, True):
                every = (None, torch.tensor([0, 40, 40, 150], dtype=torch.int32))
                for docs in every if full or (gate == "key" and delta) else every[:1]:
                    b = 1 if docs is not None else B
                    q, k, v = (grad(torch.randn(b, T, H, D, generator=gen).to(dtype)) for _ in range(3))
                    g = None if gate is None else grad(-torch.rand(*(b, T, H) if gate == "scalar" else (b, T, H, D),
                                                                   generator=gen))
                    beta = grad(torch.rand(b, T, H, generator=gen).to(dtype)) if delta else None
                    s0 = grad(torch.zeros(b if docs is None else len(docs) - 1, H, D, D))
                    o, S = chunk.chunk(q, k, v, g, beta, s0, cu_seqlens=docs)
                    (o.float().sum() + S.sum()).backward()
                    with torch.no_grad():  # the forward without gradients (the one-pass path where it applies)
                        chunk.chunk(q, k, v, g, beta, None, cu_seqlens=docs)
                        x = [None if t is None else t.detach() for t in (q, k, v, g, beta)]
                        recurrent.recurrent(*x, None, cu_seqlens=docs)  # decoding: a few tokens at once
                        maps = ((None, False), ("elu", True), ("elu1", False), ("relu", False))
                        for phi, norm in maps if gate is None and not delta else maps[:1]:
                            one = [None if t is None else t[:1, :1] for t in x]
                            recurrent.step(*one, torch.zeros(1, H, D, D), phi=phi, norm=norm)  # a Decoder step
        # the kernels' alternative paths behind CONFIG knobs: the state passes in segments for every gate, the
        # substitution inverse; then the state passes' full tiles (V tiles of 64, as many sequences and heads
        # get them, with their own pipeline depth) where these few sequences get narrow ones; then chunks of
        # 128 (the largest chunk_size the backend takes: larger tiles, more shared memory) at the full tiles
        # (the narrow ones at 128 passed test_cuda.py on an H100 for the additive, scalar-gate and GLA paths);
        # then the one-pass forward without gradients in every mode it can serve (these few heads would not
        # reach fused_min_programs), at the default depth and at the one for many programs; then the delta
        # rule's prep variants (below); last, the one-pass forward in segments and the training forward by the walk
        saved = dict(chunk.CONFIG), dict(_delta.CONFIG), dict(_gla.CONFIG)
        one_pass = {"fused_min_programs": 0, "fused_modes": chunk.FUSED_MODES_ALL + chunk.FUSED_MODES_KEY}
        segments = {"state_seg_programs": 1 << 20, "state_seg_min_chunks": 1, "state_seg_gates": (0, 1, 2),
                    "state_seg_below": 1 << 20}
        full = {"state_min_programs": 1, "state_min_programs_delta": (1, 1, 1)}
        # per-key gates' forward reading q ⊙ e^G and k ⊙ e^{G_last − G} from fwd_A (these few heads are at or below
        # fwd_scaled_bh: the defaults read them), or not (as at many heads)
        unscaled = {"fwd_scaled_bh": 0}
        alternatives = ((segments, {"inverse": "substitution", "inv_tf32": 0}, {}, 64),
                        (full, {}, {}, 64), (full, {}, {}, 128),
                        (one_pass, {}, {}, 64), ({**one_pass, "fused_wide_programs": 0, "fused_stages_wide": 2}, {}, {}, 64),
                        # the delta rule's prep: whole-chunk U and W and the inverse's forms for every gate (TF32
                        # blocks with a Newton step; TF32 with 16-row-block U and W; IEEE above), the walk decaying keys
                        ({**one_pass, "khat_walk": True}, {"uw_whole": (0, 1, 2), "inv_tf32_gates": (0, 1, 2)}, {}, 64),
                        ({}, {"uw_whole": (), "inv_tf32": 2, "inv_tf32_gates": (0, 1, 2)}, {}, 64),
                        ({}, {}, unscaled, 64), (segments, {}, unscaled, 64), (full, {}, unscaled, 64),
                        ({}, {}, {"fwd_scaled_q": False}, 64),  # the scaled keys alone
                        # the one-pass forward in segments (below fused_min_programs: a long single sequence), with
                        # and without gradients; then the training forward by one walk (train_walk 2)
                        ({"fused_min_programs": 1 << 30, "fused_seg_programs": 1 << 20, "fused_seg_min_chunks": 1,
                          "fused_modes": chunk.FUSED_MODES_ALL, "train_walk": 1}, {}, {}, 64),
                        ({"fused_min_programs": 0, "train_walk": 2}, {}, {}, 64))
        for chunk_config, delta_config, gla_config, C in alternatives:
            chunk.CONFIG.update(chunk_config)
            _delta.CONFIG.update(delta_config)
            _gla.CONFIG.update(gla_config)
            for gate in (None, "scalar", "key"):
                for delta in (False, True):
                    q, k, v = (grad(torch.randn(B, T, H, D, generator=gen).to(dtype)) for _ in range(3))
                    g = None if gate is None else grad(-torch.rand(*(B, T, H) if gate == "scalar" else (B, T, H, D),
                                                                   generator=gen))
                    beta = grad(torch.rand(B, T, H, generator=gen).to(dtype)) if delta else None
                    o, S = chunk.chunk(q, k, v, g, beta, grad(torch.zeros(B, H, D, D)), chunk_size=C)
                    (o.float().sum() + S.sum()).backward()
                    if C != 64 or "fused_modes" in chunk_config:
                        with torch.no_grad():
                            chunk.chunk(q, k, v, g, beta, None, chunk_size=C)
            chunk.CONFIG.update(saved[0])
            _delta.CONFIG.update(saved[1])
            _gla.CONFIG.update(saved[2])
        # K != V (tiles of two sizes: fwd_uw once bound one name to both, which only the compiler refuses; it
        # failed on an H200 at chunks other than 64), not powers of two, at the default chunk and at the split prep's;
        # then K = 128 with narrow V tiles at chunks of 128 (the delta rule's reverse state pass once needed
        # 306 KiB of shared memory there, on an H200)
        for C, Kd, Vd in ((64, 48, 20), (128, 48, 20), (128, 128, 32)):
            for gate in (None, "scalar", "key"):
                for delta in (False, True):
                    q, k = (grad(torch.randn(B, T, H, Kd, generator=gen).to(dtype)) for _ in range(2))
                    v = grad(torch.randn(B, T, H, Vd, generator=gen).to(dtype))
                    g = None if gate is None else grad(-torch.rand(*(B, T, H) if gate == "scalar" else (B, T, H, Kd),
                                                                   generator=gen))
                    beta = grad(torch.rand(B, T, H, generator=gen).to(dtype)) if delta else None
                    o, S = chunk.chunk(q, k, v, g, beta, grad(torch.zeros(B, H, Kd, Vd)), chunk_size=C)
                    (o.float().sum() + S.sum()).backward()
                    with torch.no_grad():
                        chunk.chunk(q, k, v, g, beta, None, chunk_size=C)
        for causal in (True, False):
            q, k, v = (grad(torch.randn(B, T, H, D, generator=gen).to(dtype)) for _ in range(3))
            normalizer.normalized(v, q, k, None, causal).float().sum().backward()


@triton.jit
def _probe(x):
    tl.store(x, 1.0)


def main() -> int:
    try:  # the compiler and ptxas for sm_90 (shipped in Triton's wheel)
        triton.compile(ASTSource(fn=_probe, signature={"x": "*fp32"}, constexprs={}), target=TARGET)
    except Exception as e:
        print(f"SKIP: Triton cannot compile for sm_90 here ({type(e).__name__}: {e})")
        return 3
    # every kernel module imported before the variable below is set, so its kernels are JITFunctions
    from longmix.kernels.triton import _cumsum, _delta, _gla, _output, _state, _varlen, chunk, normalizer, recurrent  # noqa


    JITFunction.run = _record
    os.environ["TRITON_INTERPRET"] = "1"  # now only for the host code's check that CPU tensors may run
    try:
        _drive("--all" in sys.argv)
    finally:
        del os.environ["TRITON_INTERPRET"]
    start = time.time()
    if PTX_DIR:
        os.makedirs(PTX_DIR, exist_ok=True)
    items = list(launches.values())
    with multiprocessing.get_context("fork").Pool(min(len(items), os.cpu_count() or 1)) as pool:
        errors = pool.map(_compile, range(len(items)), chunksize=1)
    for error in errors:
        if error:
            print(error, flush=True)
    failed = sum(1 for e in errors if e)
    print(f"{len(items)} distinct launches of {len({k[:2] for k in launches})} kernels compiled for sm_90 "
          f"in {time.time() - start:.0f} s; {failed} failed", flush=True)
    return 1 if failed else 0


def _compile(i: int) -> str:
    """Compile launch ``i`` of ``launches`` (a forked worker inherits them); the error, or ''."""
    fn, signature, constexprs, opts = list(launches.values())[i]
    t = time.time()
    try:
        # pointers 16-byte aligned, as the launcher specialises them for fresh tensors: only then are the tile
        # loads software-pipelined (cp.async into shared memory), which is what a launch on the GPU needs
        aligned = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
                   if signature.get(n, "").startswith("*")}
        compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=aligned),
                                  target=TARGET, options=opts)
        if PTX_DIR:  # without the debug sections and line markers, which name source lines
            ptx = re.sub(r"\.section\s+\.debug.*", "", compiled.asm["ptx"], flags=re.S)
            with open(os.path.join(PTX_DIR, f"{i:03d}_{fn.fn.__name__}.ptx"), "w") as fh:
                fh.write("".join(line + "\n" for line in ptx.splitlines()
                                 if not re.match(r"\s*(\.loc|\.file|//|\$L__)", line)))
        if compiled.metadata.shared > SHARED_MAX:  # the launch would fail with OutOfResources
            raise RuntimeError(f"needs {compiled.metadata.shared} bytes of shared memory, Hopper has {SHARED_MAX}")
    except Exception as e:  # the compiler's message, with its root cause
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        consts = {n: v for n, v in constexprs.items() if n.isupper()}
        return (f"FAILED {fn.fn.__module__}.{fn.fn.__name__} {consts} {opts}:\n{str(e)[-1500:]}\n"
                f"{type(cause).__name__}: {cause}")
    print(f"{time.time() - t:5.1f} s  {fn.fn.__name__}", flush=True)
    return ""


if __name__ == "__main__":
    sys.exit(main())
