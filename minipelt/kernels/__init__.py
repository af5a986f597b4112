"""Fast paths: each one a drop-in for one textbook function of minipelt/model, tested equal to it.

The model files compute what the papers write; this folder holds what makes that fast. A textbook
function hands its work to its kernel in its first lines (`if kernels.enabled(): ...`), so each
kernel is found where it is used, and this table lists them all:

    kernel                replaces (in minipelt/model/)          how                               textbook / kernel
    attention.attend      attention.attend                       CPU inference: fused SDPA + log Z  3.0-7.7x
                                                                 CPU training: backward by hand     1.6-1.9x
                                                                 CUDA: fused SDPA                   (no GPU lent)
    dropout.dropout16     F.dropout on attention probabilities   a quarter of the random draws      2.0x
    prefix.attend_prefix  prefix.attend_prefix                   scores laid out (h, L, B T)        1.9x
    prefix.mass_shares    mix_in_prefix's log Z step, CUDA only  both mass shares from one SDPA     (no GPU lent)
    linear.add_low_rank   lora.LoRALinear's y + s B (A x)        the GEMM adds into y (addmm_)      1.1x gated inference,
                                                                                                    1.0x training
    linear.add_scaled_linear
                          adapter.Adapter's residual + G h_A     one GEMM from the bottleneck, G    1.1-1.2x inference,
                                                                 and b riding in it (addmm)         1.2x training
    linear.mix            mix_in_prefix's (1 - lam) a + lam b    one lerp pass                      (in the mixture's)

The ratios are one MiniLM layer's (h = 12, d = 32, H = 384) at 16 x 128 and 4 x 512 tokens, 1 thread
(bench/results/textbook_minilm_cpu_kernels.md); the whole mixture is 1.9-2.2x in training and 2.9-6.8x in
inference; whole models, docs/benchmarks.md.

Kernels are on by default. `with minipelt.textbook(): ...` (or train.py / eval.py --textbook) turns
all of them off, for reading, debugging and testing: the model then runs exactly the code a reader
sees. Both paths keep gate = 0 exact (the frozen model runs the same path). They agree to rounding
(tests/test_kernels.py); the two dropouts draw different random numbers, so a training run repeats
bit for bit only on its own path. Kernels import nothing from the model: they are leaves on torch.
"""
from contextlib import contextmanager

from minipelt.kernels.attention import attend
from minipelt.kernels.dropout import dropout16
from minipelt.kernels.linear import add_low_rank, add_scaled_linear, mix
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


__all__ = ["enabled", "textbook", "attend", "dropout16", "add_low_rank", "add_scaled_linear", "mix",
           "attend_prefix", "mass_shares"]
