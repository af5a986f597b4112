"""BERT's attention, and the log of its normaliser (Vaswani et al., 2017):

    Attn(q, K, V) = softmax(S) V,   S = q K^T / sqrt(d) + mask,   log Z = logsumexp_j S_j

The mask is 0 on the keys a query may attend (the real tokens) and -inf on padding, so padding gets
no attention. Z = sum_j exp(S_j) is the attention's total mass before normalising: the gated prefix
(prefix.py) compares the prefix's mass with the tokens', hence `with_log_z`.

Every attention in the model runs through `attend`: the frozen layer's over the tokens, ungated
prefix-tuning's over [P_K; K], and the token part of UniPELT's gated prefix. Because the frozen
layer and the gated prefix run this one function, a gate at 0 gives the frozen layer's bits by
construction.

A query with no key to attend (an example that is all padding) gets the zero vector and
log Z = -inf: attention over an empty set, with no NaN in the forward or the backward.

minipelt.kernels.attend computes the same, fast (fused on CPU inference and CUDA, a written-out
backward for CPU training); `with minipelt.textbook():` runs the code below instead.
"""
import math

import torch
import torch.nn.functional as F

from minipelt import kernels


def attend(
    q: torch.Tensor,  # (B, h, T, d)
    k: torch.Tensor,  # (B, h, S, d)  S keys: the T tokens' (or a prefix's and the tokens')
    v: torch.Tensor,  # (B, h, S, d)
    key_mask: torch.Tensor,  # (B, 1, 1, S)  True where a query may attend: the real tokens
    dropout_p: float = 0.0,
    with_log_z: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> Attn(q, K, V) (B, h, T, d), and log Z (B, h, T, 1) in fp32 when asked for (the output does
    not depend on the asking; the fast path may also answer None where log Z is not cheap: CUDA)."""
    if kernels.enabled():
        return kernels.attend(q, k, v, key_mask, dropout_p, with_log_z)
    has_key = key_mask.any(dim=-1, keepdim=True)  # (B, 1, 1, 1): False for an example that is all padding
    key_mask = key_mask | ~has_key  # such an example attends to every key, then is zeroed below
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))  # (B, h, T, S)
    scores = scores.masked_fill(~key_mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # each row sums to 1 over the attended keys
    out = (F.dropout(probs, dropout_p) @ v) * has_key  # (B, h, T, d)
    if not with_log_z:
        return out, None
    log_z = torch.logsumexp(scores.float(), dim=-1, keepdim=True)  # (B, h, T, 1)
    return out, log_z.masked_fill(~has_key, float("-inf"))
