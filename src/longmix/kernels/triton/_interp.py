"""Compatibility shim for Triton's CPU interpreter (``TRITON_INTERPRET=1``) with numpy ≥ 2.4.

The interpreter holds scalar kernel arguments as 1-element numpy arrays and converts
them with ``int(array)`` when they bound a loop (``for n in range(NT)``); numpy 2.4
turned that conversion of a 1-D array into an error. This re-registers the tensor's
``__index__`` to read the single element. Only applied under the interpreter; the
GPU compiler never sees it.
"""
import os


def apply() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        return
    from triton.runtime import interpreter

    if getattr(interpreter, "_longmix_index_shim", False):
        return
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched
    interpreter._longmix_index_shim = True
