"""LoRA (Hu et al., 2021) on the query and value projections.

    y = W x + b + s * B (A x)          A: (r, H_in), B: (H_out, r), r = 8

    ungated:  s = alpha / r = 16 / 8 = 2       (the official UniPELT code's scaling)
    gated:    s = G_L(x), a Gate on the layer input (UniPELT; one gate per wrapped matrix,
              as in the official code); the gate *replaces* alpha / r.

Init (official): A ~ kaiming_uniform(a=sqrt(5)), B = 0, so B A = 0 and the wrapped model
starts as the frozen one. No LoRA dropout.

With s = 0 (a gate at 0) the sum is y + 0 = W x + b, the frozen projection, bit for bit.

An ungated LoRA can be folded into W (`merge()`), after which inference costs exactly a
plain Linear; `unmerge()` undoes it. Both are idempotent. A gated LoRA cannot be merged:
its scale depends on the input.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipelt import kernels
from minipelt.model.gate import Gate


class LoRALinear(nn.Linear):
    """An nn.Linear (same weight/bias names as the checkpoint) with an optional low-rank delta.

    With r = 0 it is exactly nn.Linear: this is how query/value look when LoRA is off.
    """

    def __init__(self, in_features: int, out_features: int, r: int = 0, alpha: float = 16.0,
                 gated: bool = False):
        super().__init__(in_features, out_features)
        self.r = r
        self.merged = False
        if r > 0:
            self.lora_A = nn.Parameter(torch.empty(r, in_features))
            self.lora_B = nn.Parameter(torch.zeros(out_features, r))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.scaling = alpha / r
            self.gate = Gate(in_features) if gated else None

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # the frozen path: (B, T, H_out)
        if self.r == 0 or self.merged:
            return y
        s = self.gate(x, token_mask) if self.gate is not None else self.scaling  # G_L(x) (B, 1, 1), or alpha / r
        if kernels.enabled():
            return kernels.add_low_rank(y, x, self.lora_A, self.lora_B, s)
        return y + s * F.linear(F.linear(x, self.lora_A), self.lora_B)  # W x + b + s B (A x); = y at s = 0

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.lora_B @ self.lora_A)  # (H_out, H_in)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha/r) B A, for inference at the cost of a plain Linear."""
        if self.r == 0 or self.merged:
            return
        if self.gate is not None:
            raise ValueError("a gated LoRA cannot be merged: its scale G_L(x) depends on the "
                             "input. Merge only ungated LoRA (method 'lora' or gated=False).")
        self.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo merge() (W <- W - (alpha/r) B A), e.g. to train further."""
        if self.r == 0 or not self.merged:
            return
        self.weight -= self.delta_weight()
        self.merged = False
