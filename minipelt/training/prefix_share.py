"""How much of each layer's attention goes to the prefix (model/prefix.py's unified view):

    lam = G Z_P / (G Z_P + Z_T),   Z_X = sum_j exp(q . x_j / sqrt(d)) over the block X   (G = 1 ungated)

per layer, pooled over heads, real tokens and examples. lam near 0 means the layer ignores its
prefix; a fresh prefix starts near its uniform share L / (L + T).

The layers do not hand out their attention masses, so forward pre-hooks keep each layer's input x
during the model's own forward pass (an evaluation batch), and q, k and the gate are recomputed from
it afterwards, the masses from one fused call (`mass_shares`).
"""
from contextlib import contextmanager

import torch

from minipelt.kernels import mass_shares
from minipelt.model.bert import BertModel


@contextmanager
def layer_inputs(bert: BertModel):
    """{layer: x (B, T, H)}: each encoder layer's input in the forward passes run inside the block (the last kept)."""
    inputs: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_pre_hook(lambda module, args, i=i: inputs.__setitem__(i, args[0]))
             for i, layer in enumerate(bert.encoder.layer)]
    try:
        yield inputs
    finally:
        for hook in hooks:
            hook.remove()


@torch.no_grad()
def prefix_share_sums(bert: BertModel, inputs: dict[int, torch.Tensor], token_mask: torch.Tensor
                      ) -> tuple[torch.Tensor, int]:
    """The sum of lam over heads and real tokens, per layer (N,), and how many (head, token) terms that is.

    inputs: layer_inputs of a forward pass on a batch whose token_mask (B, T) is True on real tokens."""
    prefix_kv = bert.prefix()  # (N, 2, h, L, d)
    sums = []
    for i, layer in enumerate(bert.encoder.layer):
        sa, x = layer.attention.self, inputs[i]
        q, k = layer.split_heads(sa.query(x, token_mask)), layer.split_heads(sa.key(x))  # (B, h, T, d)
        rho, tau = mass_shares(q, k, prefix_kv[i][0], token_mask[:, None, None, :])  # (B, h, T, 1)
        g = layer.prefix_gate(x, token_mask)[..., None].float() if layer.prefix_gate is not None else 1.0
        lam = (g * rho / (g * rho + tau))[..., 0]  # (B, h, T)
        sums.append((lam * token_mask[:, None, :]).sum())
    return torch.stack(sums), int(token_mask.sum()) * bert.config.num_attention_heads


@torch.no_grad()
def prefix_shares(bert: BertModel, ids: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Per layer: the prefix's share of the attention mass on one batch (ids, mask: (B, T)), mean over
    real tokens, heads and examples."""
    with layer_inputs(bert) as inputs:
        bert(ids, mask)
    sums, count = prefix_share_sums(bert, inputs, mask.bool())
    return (sums / count).tolist()
