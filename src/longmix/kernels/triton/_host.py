"""Host-side integer helpers for the kernels' launch code.

``triton.cdiv`` and ``triton.next_power_of_2`` are ``ConstexprFunction`` objects in Triton 3.6: called from
Python each costs ~2.7 µs, and a forward's launch code makes ~20 such calls, a tenth of a 0.4 ms forward's
host time (a long single sequence's forward is that short on an H100, so host time shows in it). These are
plain Python (~0.03 µs).
"""


def cdiv(a: int, b: int) -> int:
    """⌈a / b⌉ for positive b."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two ≥ n (1 for n ≤ 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
