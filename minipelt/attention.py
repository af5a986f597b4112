"""BERT's attention over the tokens, and the log of its normaliser:

    Attn(q, K, V) = softmax(S) V,   S = q K^T / sqrt(d) + mask,   log Z_T = logsumexp_j S_j

Every layer calls `token_attention`, with or without a prefix: the frozen layer uses the output,
UniPELT's gated prefix (prefix.py) also needs log Z_T, the log of the tokens' attention mass.
Because both run this one function, a gate at 0 gives the frozen layer's bits by construction.

No public PyTorch op returns log Z_T, so where it is cheap it is taken as follows:
- CPU, no gradient, no dropout (inference): the fused kernel that F.scaled_dot_product_attention
  runs on CPU returns it from its own entry point (it keeps it for its backward). Same kernel,
  same output bits, and log Z_T for free. There it is not differentiable, hence no gradient.
- CPU otherwise (training): attention written out, as F.scaled_dot_product_attention itself does
  on CPU with dropout (its fused kernel has none), so nothing is lost; log Z_T = s_j - log p_j
  from one score and one probability per query, differentiated by autograd like the rest.
- Elsewhere (CUDA): F.scaled_dot_product_attention, fused with dropout; log Z_T is None and the
  gated prefix gets the tokens' share of the mass from a second fused call (prefix.py).
"""
import torch
import torch.nn.functional as F


def token_attention(
    q: torch.Tensor,  # (B, h, T, d)
    k: torch.Tensor,  # (B, h, T, d)
    v: torch.Tensor,  # (B, h, T, d)
    key_mask: torch.Tensor,  # (B, 1, 1, T)  True where a query may attend: the real tokens
    dropout_p: float = 0.0,
    with_log_z: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> Attn(q, K, V) (B, h, T, d), and log Z_T (B, h, T, 1) in fp32, or None where not asked
    for (the output does not depend on the asking) or not cheap (CUDA)."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p), None
    if torch.is_autocast_enabled("cpu"):  # as F.scaled_dot_product_attention would run under autocast
        q, k, v = (t.to(torch.get_autocast_dtype("cpu")) for t in (q, k, v))
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~key_mask, float("-inf"))
    if dropout_p == 0 and not torch.is_grad_enabled():
        out, log_z = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias)
        return out, log_z[..., None]
    k = k * q.size(-1) ** -0.5  # the scale on k: autograd then keeps q itself, as the prefix's scores do
    probs = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)  # (B, h, T, T)
    out = F.dropout(probs, dropout_p, training=dropout_p > 0) @ v
    if not with_log_z:
        return out, None
    # log p_j = s_j - log Z_T for every key j; the likeliest key's (p_j >= 1/T) is the best conditioned.
    # s_j is recomputed from k_j rather than picked from the scores, which autograd would then keep.
    j = probs.detach().argmax(dim=-1, keepdim=True)  # (B, h, T, 1): a real token, so no bias there
    s_j = (q * k.gather(2, j.expand(-1, -1, -1, k.size(-1)))).sum(dim=-1, keepdim=True)  # (B, h, T, 1)
    return out, s_j.float() - probs.gather(-1, j).float().log()
