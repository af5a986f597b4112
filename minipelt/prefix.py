"""Prefix-tuning (Li & Liang, 2021): L trainable key/value vectors in front of every layer's.

    P  : (L, H) trainable embedding, L = 10
    MLP: Linear(H -> 512) -> tanh -> Linear(512 -> N * 2 * H)       (reparametrisation)
    P_K, P_V = split(MLP(P))   per layer: (h, L, d), shared by every example

Attention then runs over [P_K; K] and [P_V; V]. Prefixes bypass W_K, W_V, get no position
embedding and no dropout, and are always attended. The MLP only stabilises training:
`fold()` replaces it by the fixed P_K, P_V it produces (N * 2 * L * H = 184,320 values for
bert-base, the paper's count), with identical outputs.

Unified view (He et al., ICLR 2022) used to compute it:

    Attn(q, [P_K; K], [P_V; V]) = (1 - lam) Attn(q, K, V) + lam Attn(q, P_K, P_V)
    lam = Z_P / (Z_P + Z_T),   Z_X = sum_j exp(q . x_j / sqrt(d)) over the block X

UniPELT's gate G_P (on the layer input) enters in one of two forms:
- "attention" (default, minipelt): the gate scales the prefix's attention mass,
  lam = G_P Z_P / (G_P Z_P + Z_T). At G_P = 0, lam = 0 and the output *is* Attn(q, K, V),
  bit for bit: the frozen layer.
- "kv" (official code): P_K, P_V are multiplied by G_P. At G_P = 0 the prefix keys are 0,
  each still takes exp(0) of attention mass, so the layer does NOT reduce to the frozen one.

Computing the token part Attn(q, K, V) by the same fused call as the frozen model and mixing
the prefix in afterwards is what makes the G_P = 0 case exact (a softmax over L + T keys
would sum in a different order).
"""
import torch
import torch.nn as nn


class PrefixTuning(nn.Module):
    def __init__(self, n_layers: int, n_heads: int, hidden_size: int, length: int = 10,
                 mlp_hidden: int = 512):
        super().__init__()
        self.shape = (length, n_layers, 2, n_heads, hidden_size // n_heads)  # (L, N, 2, h, d)
        self.embedding = nn.Embedding(length, hidden_size)  # P
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden),
            nn.Tanh(),
            nn.Linear(mlp_hidden, n_layers * 2 * hidden_size),
        )
        self.folded: nn.Parameter | None = None

    def forward(self) -> torch.Tensor:
        """-> P_K, P_V of every layer: (N, 2, h, L, d)."""
        if self.folded is not None:
            return self.folded
        kv = self.mlp(self.embedding.weight)  # (L, N * 2 * H)
        return kv.view(self.shape).permute(1, 2, 3, 0, 4)  # (N, 2, h, L, d)

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the MLP by the P_K, P_V it produces (after training; idempotent)."""
        if self.folded is None:
            self.folded = nn.Parameter(self.forward().contiguous())
            del self.embedding, self.mlp


def attend_with_prefix(
    out_tokens: torch.Tensor,  # (B, h, T, d)  Attn(q, K, V), the frozen attention
    q: torch.Tensor,  # (B, h, T, d)
    k: torch.Tensor,  # (B, h, T, d)
    keep: torch.Tensor,  # (B, 1, 1, T)  True for real tokens
    prefix_kv: torch.Tensor,  # (2, h, L, d)  this layer's P_K, P_V
    gate: torch.Tensor | None,  # (B, 1, 1) G_P, or None when ungated
    gate_form: str = "attention",
) -> torch.Tensor:
    """Attention over [prefix; tokens] written as the frozen attention plus a mixed-in prefix."""
    p_k, p_v = prefix_kv[0], prefix_kv[1]  # (h, L, d) each
    log_gate = 0.0
    if gate is not None:
        gate = gate[..., None]  # (B, 1, 1, 1)
        if gate_form == "kv":
            p_k, p_v = gate * p_k, gate * p_v  # (B, h, L, d)
        else:
            log_gate = torch.log(gate)  # log 0 = -inf gives lam = 0 exactly
    scale = q.size(-1) ** -0.5
    s_tokens = (q @ k.transpose(-1, -2)) * scale  # (B, h, T, T)
    s_tokens = s_tokens.masked_fill(~keep, torch.finfo(s_tokens.dtype).min)
    s_prefix = (q @ p_k.transpose(-1, -2)) * scale  # (B, h, T, L)
    log_z_tokens = s_tokens.logsumexp(-1, keepdim=True)  # (B, h, T, 1)
    log_z_prefix = s_prefix.logsumexp(-1, keepdim=True) + log_gate
    lam = torch.sigmoid(log_z_prefix - log_z_tokens)  # G_P Z_P / (G_P Z_P + Z_T)
    out_prefix = torch.softmax(s_prefix, dim=-1) @ p_v  # (B, h, T, d)
    return out_tokens + lam * (out_prefix - out_tokens)
