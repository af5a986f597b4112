"""BERT's attention, and the log of its normaliser:

    Attn(q, K, V) = softmax(S) V,   S = q K^T / sqrt(d) + mask,   log Z = logsumexp_j S_j

Every attention in the model runs through `attend`: the frozen layer's over the tokens, ungated
prefix-tuning's over [P_K; K], and the token part of UniPELT's gated prefix (prefix.py), which
also needs log Z_T, the log of the tokens' attention mass. Because the frozen layer and the gated
prefix run this one function, a gate at 0 gives the frozen layer's bits by construction.

No public PyTorch op returns log Z_T, so where it is cheap it is taken as follows:
- CPU, no gradient, no dropout (inference): the fused kernel that F.scaled_dot_product_attention
  runs on CPU returns it from its own entry point (it keeps it for its backward). Same kernel,
  same output bits, and log Z_T for free. There it is not differentiable, hence no gradient.
- CPU otherwise (training): attention written out, as F.scaled_dot_product_attention itself does
  on CPU with dropout (its fused kernel has none), so nothing is lost; log Z_T = s_j - log p_j
  from one score and one probability per query. Its backward is written out too (`WrittenOut`):
  d log Z_T / dS = P, so log Z_T's gradient is one multiply-add into the scores' gradient, and
  only P and the dropped-out P are kept for it (autograd would also keep the dropout mask).
  Its dropout (`dropout`) takes a quarter of F.dropout's random draws: at length 512 those
  draws cost more than the softmax.
- Elsewhere (CUDA): F.scaled_dot_product_attention, fused with dropout; log Z_T is None and the
  gated prefix gets the tokens' share of the mass from a second fused call (prefix.py).
"""
import torch
import torch.nn.functional as F


def attend(
    q: torch.Tensor,  # (B, h, T, d)
    k: torch.Tensor,  # (B, h, S, d)  S keys: the T tokens' (or a prefix's and the tokens')
    v: torch.Tensor,  # (B, h, S, d)
    key_mask: torch.Tensor,  # (B, 1, 1, S)  True where a query may attend: the real tokens
    dropout_p: float = 0.0,
    with_log_z: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> Attn(q, K, V) (B, h, T, d), and log Z (B, h, T, 1) in fp32, or None where not asked
    for (the output does not depend on the asking) or not cheap (CUDA)."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p), None
    if torch.is_autocast_enabled("cpu"):  # as F.scaled_dot_product_attention would run under autocast
        q, k, v = (t.to(torch.get_autocast_dtype("cpu")) for t in (q, k, v))
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~key_mask, float("-inf"))
    if dropout_p == 0 and not torch.is_grad_enabled():
        out, log_z = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias)
        return out, log_z[..., None]
    return WrittenOut.apply(q, k, v, bias, dropout_p, with_log_z)


class WrittenOut(torch.autograd.Function):
    """out = dropout(P) V, P = softmax(S), S = q K^T / sqrt(d) + bias, and log Z_T, with the backward
    by hand. With D = dropout(P) (mask and 1 / (1 - p) folded in) and dD = dout V^T:

        dS = P * dP - P sum_j (P * dP)_j + P dlogZ,   P * dP = D * dD   (dropout's mask is in D)
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, dropout_p: float, with_log_z: bool):
        k = k * q.size(-1) ** -0.5  # the scale on k, so that s_j below is one dot product
        probs = torch.softmax((q @ k.transpose(-1, -2)).add_(bias), dim=-1)  # P (B, h, T, S)
        dropped = dropout(probs, dropout_p) if dropout_p > 0 else probs  # D
        ctx.save_for_backward(q, k, v, probs, dropped)
        out = dropped @ v  # (B, h, T, d)
        if not with_log_z:
            return out, None
        # log p_j = s_j - log Z for every key j; the likeliest key's (p_j >= 1/S) is the best conditioned.
        j = probs.argmax(dim=-1, keepdim=True)  # (B, h, T, 1): an attended key, so its bias is 0
        s_j = (q * k.gather(2, j.expand(-1, -1, -1, k.size(-1)))).sum(dim=-1, keepdim=True)  # (B, h, T, 1)
        return out, s_j.float() - probs.gather(-1, j).float().log()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_log_z):
        q, k, v, probs, dropped = ctx.saved_tensors
        grad_v = dropped.transpose(-1, -2) @ grad_out  # (B, h, T, d)
        grad_s = (grad_out @ v.transpose(-1, -2)).mul_(dropped)  # D * dD = P * dP, (B, h, T, S)
        shift = grad_s.sum(dim=-1, keepdim=True)  # sum_j (P * dP)_j, (B, h, T, 1)
        if grad_log_z is not None:
            shift -= grad_log_z.to(shift.dtype)
        grad_s.addcmul_(probs, shift, value=-1)  # dS
        grad_q = grad_s @ k  # k is scaled already
        grad_k = (grad_s.transpose(-1, -2) @ q) * q.size(-1) ** -0.5
        return grad_q, grad_k, grad_v, None, None, None


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.dropout(x, p) in training, from a quarter of the random draws: each element is zeroed
    with probability p, the rest scaled by 1 / (1 - p).

    F.dropout draws (at least) one 32-bit random number per element, and on the attention
    probabilities, (B, h, T, S), that draw is the largest single cost of a CPU training step at
    length 512. Here each 64-bit draw gives four 16-bit numbers, and p is rounded to a multiple
    of 2^-16 (0.1 -> 0.100006), with the scale to match, so that E[dropout(x)] = x exactly.
    """
    n = x.numel()
    bits = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    bits = bits.view(torch.int16)[:n].view(x.shape)  # uniform over the 2^16 values of an int16
    n_dropped = round(p * 2**16)  # of those 2^16 values, the lowest n_dropped drop the element
    if not 0 <= n_dropped < 2**16:
        raise ValueError(f"attention dropout p = {p}: it must be in [0, 1) (at most 1 - 2^-17)")
    return (x * (2**16 / (2**16 - n_dropped))).masked_fill_(bits < -2**15 + n_dropped, 0)
