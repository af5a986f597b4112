"""UniPELT's gates: how much of each PELT submodule a layer lets through.

    G = mean_t sigmoid(W_g h_t + b_g)          W_g: (1, H), one scalar per example per layer

Each gate is a Linear(H -> 1) followed by a sigmoid, averaged over the real tokens of an
example (padding excluded, unlike the official code, so that padding an example does not
change its gates). Init as in the official code: W_g ~ N(0, 0.02), b_g = 0, so every gate
starts near sigmoid(0) = 0.5. `official_gate_mean()` averages over every position instead,
padding included, as the official code does; it exists only to compare with that code
(tests/test_reference.py).

Every PELT contribution enters the model as `frozen_value + G * delta`. With G = 0 that sum
is the frozen value bit for bit, which is the invariant the tests check. `forced_gates()`
is the documented way to pin every gate to a value (0 gives the frozen model back).

Each gate keeps only its last value (detached), read on demand with `gate_values()`; nothing
grows per step.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn


class Gate(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)
        self.forced: float | None = None  # set by forced_gates(); None in normal use
        self.mean_over_padding = False  # set by official_gate_mean(); False in normal use
        self.last: torch.Tensor | None = None  # (B,) values of the last forward, detached

    def forward(self, h: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """h: (B, T, H), token_mask: (B, T) with 1 for real tokens (None: all real) -> gate (B, 1, 1)."""
        if self.forced is not None:
            g = torch.full(h.shape[:1], self.forced, dtype=h.dtype, device=h.device)
        else:
            per_token = torch.sigmoid(self.linear(h)).squeeze(-1)  # (B, T)
            if token_mask is None or self.mean_over_padding:
                mask = torch.ones_like(per_token)
            else:
                mask = token_mask.to(per_token.dtype)
            g = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B,) masked mean
        self.last = g.detach()
        return g[:, None, None]  # broadcasts over tokens and features


@contextmanager
def gates_set(model: nn.Module, **attributes):
    """Set attributes of every Gate of `model` inside the `with` block, then reset them."""
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    saved = [{name: getattr(gate, name) for name in attributes} for gate in gates]
    try:
        for gate in gates:
            for name, value in attributes.items():
                setattr(gate, name, value)
        yield
    finally:
        for gate, values in zip(gates, saved):
            for name, value in values.items():
                setattr(gate, name, value)


def forced_gates(model: nn.Module, value: float):
    """Pin every gate of `model` to `value` inside the `with` block, e.g. 0.0 for the frozen model."""
    return gates_set(model, forced=value)


def official_gate_mean(model: nn.Module):
    """Average every gate of `model` over all positions, padding included, inside the `with`
    block: the official code's mean, under which padding an example changes its gates."""
    return gates_set(model, mean_over_padding=True)
