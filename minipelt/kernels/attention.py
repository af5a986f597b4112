"""The fast `attend`: minipelt/model/attention.attend's result, computed as fast as each device allows.

    Attn(q, K, V) = softmax(S) V,   S = q K^T / sqrt(d) + mask,   log Z = logsumexp_j S_j

No public PyTorch op returns log Z, which the gated prefix needs, so where it is cheap it is taken:
- CPU, no gradient, no dropout (inference): the fused kernel behind F.scaled_dot_product_attention,
  called through its own entry point, which also returns log Z (it keeps it for its backward). The
  same kernel gives the same output bits, and log Z for free. The entry point is private: if this
  torch lacks it or its signature changed, the written-out way below serves, with one warning.
- CPU otherwise (training): attention written out, as F.scaled_dot_product_attention itself does on
  CPU with dropout (its fused kernel has none), with the backward written out too (`WrittenOut`):
  it keeps only P and the dropped-out P, where autograd would also keep the dropout mask, and log Z's
  gradient is one multiply-add (d log Z / dS = P). The dropout is `dropout16`.
- CUDA: F.scaled_dot_product_attention, fused with dropout; log Z is None there, and the gated prefix
  takes the mass shares from one more fused call instead (prefix.mass_shares).

As in the textbook, a query with no key to attend (an example that is all padding) gets the zero
vector and log Z = -inf: the attention over an empty set.

Measured against the textbook attend, one MiniLM layer (12 heads of 32), 1 thread: inference with
log Z 3.0x faster at 16 x 128 and 7.7x at 4 x 512; training (forward and backward, dropout 0.1,
log Z) 1.6x and 1.9x, of which dropout16 is part (bench/results/textbook_minilm_cpu_kernels.md).
"""
import warnings

import torch
import torch.nn.functional as F

from minipelt.kernels.dropout import dropout16


def fused_cpu_entry(ops=torch.ops.aten):
    """The fused CPU kernel's entry point that returns (output, logsumexp), or None where this torch
    has no such op (then a warning says so, once: this runs at import)."""
    op = getattr(ops, "_scaled_dot_product_flash_attention_for_cpu", None)
    schema = None if op is None else op.default._schema
    if schema is not None and ([a.name for a in schema.arguments][:3] == ["query", "key", "value"]
                               and "attn_mask" in [a.name for a in schema.arguments]
                               and [r.name for r in schema.returns] == ["output", "logsumexp"]):
        return op
    warnings.warn(f"torch {torch.__version__} has no aten._scaled_dot_product_flash_attention_for_cpu(query, "
                  f"key, value, ..., attn_mask) -> (output, logsumexp): CPU inference attention is written out "
                  f"instead (same values, somewhat slower)")
    return None


FUSED_CPU = fused_cpu_entry()


def attend(q, k, v, key_mask, dropout_p: float = 0.0, with_log_z: bool = False):
    """q: (B, h, T, d), k, v: (B, h, S, d), key_mask: (B, 1, 1, S) bool -> Attn (B, h, T, d), and
    log Z (B, h, T, 1) in fp32, or None where not asked for or not cheap (CUDA)."""
    has_key = key_mask.any(dim=-1, keepdim=True)  # (B, 1, 1, 1): False for an example that is all padding
    if q.device.type == "cpu" and bool(has_key.all()):  # the usual case (checked for free on CPU)
        return attend_somewhere(q, k, v, key_mask, dropout_p, with_log_z)
    # Such an example attends to every key, then is zeroed: no NaN, forward or backward.
    out, log_z = attend_somewhere(q, k, v, key_mask | ~has_key, dropout_p, with_log_z)
    return out * has_key, None if log_z is None else log_z.masked_fill(~has_key, float("-inf"))


def attend_somewhere(q, k, v, key_mask, dropout_p, with_log_z):
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p), None
    if torch.is_autocast_enabled("cpu"):  # as F.scaled_dot_product_attention would run under autocast
        q, k, v = (t.to(torch.get_autocast_dtype("cpu")) for t in (q, k, v))
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~key_mask, float("-inf"))
    if dropout_p == 0 and not torch.is_grad_enabled() and FUSED_CPU is not None:
        out, log_z = FUSED_CPU(q, k, v, 0.0, False, attn_mask=bias)
        return out, log_z[..., None]
    return WrittenOut.apply(q, k, v, bias, dropout_p, with_log_z)


class WrittenOut(torch.autograd.Function):
    """out = dropout(P) V, P = softmax(S), S = q K^T / sqrt(d) + bias, and log Z, with the backward
    by hand. With D = dropout(P) (mask and 1 / (1 - p) folded in) and dD = dout V^T:

        dS = P * dP - P sum_j (P * dP)_j + P dlogZ,   P * dP = D * dD   (dropout's mask is in D)
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, dropout_p: float, with_log_z: bool):
        k = k * q.size(-1) ** -0.5  # the scale on k: fewer values than on the scores
        scores = (q @ k.transpose(-1, -2)).add_(bias)  # S (B, h, T, S)
        probs = torch.softmax(scores, dim=-1)  # P
        # log Z = s_j - log p_j for every key j, read off the scores the softmax used; the likeliest
        # key's (p_j >= 1/S) is the best conditioned.
        s_top, top = scores.max(dim=-1, keepdim=True) if with_log_z else (None, None)  # (B, h, T, 1)
        del scores
        dropped = dropout16(probs, dropout_p) if dropout_p > 0 else probs  # D
        ctx.save_for_backward(q, k, v, probs, dropped)
        out = dropped @ v  # (B, h, T, d)
        if not with_log_z:
            return out, None
        return out, s_top.float() - probs.gather(-1, top).float().log()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_log_z):
        q, k, v, probs, dropped = ctx.saved_tensors
        grad_v = dropped.transpose(-1, -2) @ grad_out  # (B, h, S, d)
        grad_s = (grad_out @ v.transpose(-1, -2)).mul_(dropped)  # D * dD = P * dP, (B, h, T, S)
        shift = grad_s.sum(dim=-1, keepdim=True)  # sum_j (P * dP)_j, (B, h, T, 1)
        if grad_log_z is not None:
            shift -= grad_log_z.to(shift.dtype)
        grad_s.addcmul_(probs, shift, value=-1)  # dS
        grad_q = grad_s @ k  # k is scaled already
        grad_k = (grad_s.transpose(-1, -2) @ q) * q.size(-1) ** -0.5
        return grad_q, grad_k, grad_v, None, None, None
