"""`dropout16`: F.dropout(x, p) in training, from a quarter of the random draws.

F.dropout draws (at least) one 32-bit random number per element, and on the attention
probabilities, (B, h, T, S), that draw is the largest single cost of a CPU training step at
length 512. Here each 64-bit draw gives four 16-bit numbers: each element is zeroed with
probability p rounded to a multiple of 2^-16 (0.1 -> 0.100006, at most 1 - 2^-16), and the rest
scaled to match, so that E[dropout16(x)] = x exactly. Replaces F.dropout on the attention
probabilities (minipelt/model/attention.py, prefix.py); the random numbers differ from F.dropout's.
Measured on (B, 12, T, T) probabilities, 1 thread: 2.0x F.dropout's speed at 16 x 128 and at 4 x 512
(bench/results/textbook_minilm_cpu_kernels.md).
"""
import torch

RESOLUTION = 2**16  # p is a multiple of 1 / RESOLUTION


def dropout16(x: torch.Tensor, p: float) -> torch.Tensor:
    if not 0 <= p < 1:
        raise ValueError(f"attention dropout p = {p}: it must be in [0, 1)")
    n = x.numel()
    bits = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    bits = bits.view(torch.int16)[:n].view(x.shape)  # uniform over the 2^16 values of an int16
    n_dropped = min(round(p * RESOLUTION), RESOLUTION - 1)  # the lowest n_dropped values drop the element
    return (x * (RESOLUTION / (RESOLUTION - n_dropped))).masked_fill_(bits < -RESOLUTION // 2 + n_dropped, 0)
