"""Adapter (Pfeiffer et al., 2021 "output adapter"): a bottleneck MLP after each FFN.

    x_A = LN2(h_F + a)                         the frozen layer's output (paper: h_FN)
    h_A = W_up relu(W_down x_A + b_d) + b_u    W_down: (H/16, H), W_up: (H, H/16)
    out = LN2(G_A * h_A + h_F + a)             the same pretrained LN2, applied again

h_F is the FFN output before its residual, a the attention block's output. Ungated, G_A = 1;
UniPELT gates it with G_A(x_A). No extra LayerNorm and no dropout inside the adapter.

Init (official code): all weights N(0, 0.02), biases 0. The up-projection is *not* zero, so
an ungated adapter changes the model from the first step; a gate at 0 still removes it
exactly: residual + 0 * h_A = h_F + a, and LN2 of that is the frozen layer's output.
Parameters per layer: 2 H m + m + H (74,544 for bert-base, m = 48).
"""
import torch
import torch.nn as nn

from minipelt import kernels
from minipelt.model.gate import Gate


class Adapter(nn.Module):
    def __init__(self, hidden_size: int, reduction_factor: int = 16, gated: bool = False):
        super().__init__()
        bottleneck = hidden_size // reduction_factor
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        self.gate = Gate(hidden_size) if gated else None

    def forward(self, x_a: torch.Tensor, residual: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """x_a: (B, T, H) the frozen layer output, residual: h_F + a -> residual + G_A * h_A, (B, T, H)."""
        bottleneck = torch.relu(self.down(x_a))  # (B, T, m)
        g = self.gate(x_a, token_mask) if self.gate is not None else 1.0  # G_A (B, 1, 1), or 1 ungated
        if kernels.enabled():
            return kernels.add_scaled_linear(residual, bottleneck, self.up.weight, self.up.bias, g)
        h_a = self.up(bottleneck)  # (B, T, H)
        return residual + g * h_a  # = residual, bit for bit, at G_A = 0
