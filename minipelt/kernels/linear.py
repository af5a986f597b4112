"""Fused adds for the methods' deltas: the same sums as the textbook, in fewer passes over (B, T, H).
Measured (MiniLM layer, 1 thread, bench/results/textbook_minilm_cpu_kernels.md): a gated LoRA projection
in inference 1.1x faster, an ungated one in training the same speed (within 3%); the gated adapter 1.1-1.2x
faster in inference and 1.2x in training.

    add_low_rank      y + s B (A x)          LoRA (minipelt/model/lora.py): the GEMM adds B's product
                                             into y in place (addmm_), with the scale s on the r-wide A x
    add_scaled_linear r + s (W x + b)        the adapter's residual + G_A h_A (minipelt/model/adapter.py):
                                             one GEMM from the m-wide bottleneck, s and b riding in it
    mix               (1 - lam) a + lam b    the gated prefix's mixture (minipelt/model/prefix.py): one lerp
"""
import torch
import torch.nn.functional as F


def add_low_rank(y: torch.Tensor, x: torch.Tensor, lora_A: torch.Tensor, lora_B: torch.Tensor, s) -> torch.Tensor:
    """y (B, T, H_out) + s * B (A x), written into y; s: a float or (B, 1, 1)."""
    down = s * F.linear(x, lora_A)  # (B, T, r): s B (A x) = B (s A x), a pass over H_out / r fewer values
    # In-place ops skip autocast, hence the casts to y's dtype (bf16 under autocast, else a no-op).
    return y.flatten(0, -2).addmm_(down.flatten(0, -2).to(y.dtype), lora_B.t().to(y.dtype)).view_as(y)


def add_scaled_linear(residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      s) -> torch.Tensor:
    """residual (B, T, H_out) + s * (W x + b), x: (B, T, m), s: a float or (B, 1, 1).

    One GEMM over the m + 1 columns [s x, s] against [W^T; b^T] adds s W x + s b into residual (addmm),
    where the textbook writes W x + b out, scales it and adds it: two passes over (B, T, H_out) fewer.
    At s = 0 the columns are zeros and the sum is residual exactly. Computed in residual's dtype
    (under autocast too: the GEMM is m + 1 deep, and the residual stream keeps its precision).
    """
    s = torch.as_tensor(s, dtype=residual.dtype, device=x.device).expand(*x.shape[:-1], 1)  # (B, T, 1)
    scaled = torch.cat([s * x.to(residual.dtype), s], dim=-1)  # (B, T, m + 1)
    weight_and_bias = torch.cat([weight, bias[:, None]], dim=1).to(residual.dtype)  # (H_out, m + 1)
    with torch.autocast(residual.device.type, enabled=False):
        return torch.addmm(residual.flatten(0, -2), scaled.flatten(0, -2), weight_and_bias.t()).view_as(residual)


def mix(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """(1 - lam) a + lam b in one pass; exactly a at lam = 0."""
    return torch.lerp(a, b, lam)
