"""Fast paths: each one a drop-in for one textbook function of minipelt/model, tested equal to it.

The model files compute what the papers write; this folder holds what makes that fast. A textbook
function hands its work to its kernel in its first lines (`if kernels.enabled(): ...`), so each
kernel is found where it is used, and this table lists them all:

    kernel                        replaces (minipelt/model/...)              what it buys (measured; docs/benchmarks.md)
    attention.attend              attention.attend                           CPU inference: the fused SDPA kernel, with log Z
                                                                             for free; CPU training: the backward written out
                                                                             (keeps P, not autograd's graph); CUDA: fused SDPA
    dropout.dropout16             F.dropout on attention probabilities      a quarter of the random draws (the largest single
                                                                             cost of a CPU train step at length 512)
    prefix.attend_prefix          prefix.attend_prefix                       the T x L prefix scores laid out (h, L, B T): one
                                                                             wide GEMM per head instead of rows of L = 10
    prefix.mass_shares            prefix.mix_in_prefix's logsumexp step      CUDA, where fused attention gives no log Z: the
                                                                             token and prefix mass shares from one fused call
    linear.add_low_rank           lora.LoRALinear's  y + s B (A x)           the low-rank product added into y by the GEMM
                                                                             (addmm_): no (B, T, H) temporaries
    linear.add_gated              adapter.Adapter's  residual + G h_A        one pass (addcmul)
    linear.mix                    prefix.mix_in_prefix's (1 - lam) a + lam b one pass (lerp)

Kernels are on by default. `with minipelt.textbook(): ...` (or train.py / eval.py --textbook) turns
all of them off, for reading, debugging and testing: the model then runs exactly the code a reader
sees. Both paths keep gate = 0 exact (the frozen model runs the same path). They agree to rounding
(tests/test_kernels.py); the two dropouts draw different random numbers, so a training run repeats
bit for bit only on its own path. Kernels import nothing from the model: they are leaves on torch.
"""
from contextlib import contextmanager

from minipelt.kernels.attention import attend
from minipelt.kernels.dropout import dropout16
from minipelt.kernels.linear import add_gated, add_low_rank, mix
from minipelt.kernels.prefix import attend_prefix, mass_shares

_enabled = True


def enabled() -> bool:
    """Whether the model takes its fast paths now (True unless inside `textbook()`)."""
    return _enabled


@contextmanager
def textbook(on: bool = True):
    """Inside the block the model runs its textbook functions only (on=False: the kernels, as by default)."""
    global _enabled
    saved, _enabled = _enabled, not on
    try:
        yield
    finally:
        _enabled = saved


__all__ = ["enabled", "textbook", "attend", "dropout16", "add_gated", "add_low_rank", "mix", "attend_prefix",
           "mass_shares"]
