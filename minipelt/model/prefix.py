"""Prefix-tuning (Li & Liang, 2021): L trainable key/value vectors in front of every layer's.

    P  : (L, H) trainable embedding, L = 10
    MLP: Linear(H -> 512) -> tanh -> Linear(512 -> N * 2 * H)       (reparametrisation)
    P_K, P_V = split(MLP(P))   per layer: (h, L, d), shared by every example

Attention then runs over [P_K; K] and [P_V; V]. Prefixes bypass W_K, W_V, get no position
embedding, and are always attended; in training, attention dropout applies to the prefix
probabilities as to the tokens' (as in the official code). The MLP only stabilises training:
`fold()` replaces it by the fixed P_K, P_V it produces (N * 2 * L * H = 184,320 values for
bert-base, the paper's count), with identical outputs.

Init (official code: the prefix sits inside the encoder, so the Hugging Face initialiser
applies): embedding and Linear weights N(0, 0.02), biases 0. At bert-base size P_K, P_V then
start with std ~0.005, so the prefix starts with about its uniform share of the attention.

Unified view (He et al., ICLR 2022): attention over [prefix; tokens] is a mixture of two attentions,

    Attn(q, [P_K; K], [P_V; V]) = (1 - lam) Attn(q, K, V) + lam Attn(q, P_K, P_V)
    lam = Z_P / (Z_P + Z_T) = sigmoid(log Z_P - log Z_T),   Z_X = sum_j exp(q . x_j / sqrt(d)) over block X

UniPELT's gate G_P (on the layer input) enters in one of two forms:
- "attention" (default, minipelt): the gate scales the prefix's attention mass,

      lam = G_P Z_P / (G_P Z_P + Z_T) = sigmoid(log G_P + log Z_P - log Z_T)

  that is, the gate adds log G_P to every prefix score (exp(s + log G) = G exp(s)). At G_P = 0,
  lam = 0 and the output *is* Attn(q, K, V), bit for bit: the frozen layer. So `mix_in_prefix`
  computes the right-hand side: the token part by the frozen layer's own call to `attend`, which also
  gives log Z_T, the prefix part from its L keys alone (`attend_prefix`), mixed with lam (one call
  over [P_K; K] would sum in another order and not give the frozen bits).
- "kv" (official code): P_K, P_V are multiplied by G_P. At G_P = 0 the prefix keys are 0, each
  still takes exp(0) of attention mass, so the layer does NOT reduce to the frozen one.
Ungated prefix-tuning and the "kv" form have no exactness to keep: they run the left-hand side, one
`attend` over [P_K; K], [P_V; V].

An example with no real token attends to the prefix alone (lam = 1 at G_P > 0; at G_P = 0 it gets
the frozen layer's zeros, see attention.py).
"""
import torch
import torch.nn as nn

from minipelt import kernels
from minipelt.model.attention import attend


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
        for weight in (self.embedding.weight, self.mlp[0].weight, self.mlp[2].weight):
            nn.init.normal_(weight, std=0.02)  # the official init (see the module docstring)
        for bias in (self.mlp[0].bias, self.mlp[2].bias):
            nn.init.zeros_(bias)
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


def prefix_attention(
    q: torch.Tensor,  # (B, h, T, d)
    k: torch.Tensor,  # (B, h, T, d)
    v: torch.Tensor,  # (B, h, T, d)
    key_mask: torch.Tensor,  # (B, 1, 1, T)  True where a query may attend: the real tokens
    prefix_kv: torch.Tensor,  # (2, h, L, d)  this layer's P_K, P_V
    gate: torch.Tensor | None,  # (B, 1, 1) G_P, or None when ungated
    gate_form: str = "attention",
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention over [prefix; tokens] -> (B, h, T, d)."""
    p_k, p_v = prefix_kv[0], prefix_kv[1]  # (h, L, d) each
    if gate is not None and gate_form == "attention":
        return mix_in_prefix(q, k, v, key_mask, p_k, p_v, gate[..., None], dropout_p)
    if gate is not None:  # "kv", the official form
        p_k, p_v = gate[..., None] * p_k, gate[..., None] * p_v  # (B, h, L, d)
    B, h, T, d = q.shape
    keys = torch.cat([p_k.expand(B, h, -1, d), k], dim=2)  # (B, h, L + T, d)
    values = torch.cat([p_v.expand(B, h, -1, d), v], dim=2)
    return attend(q, keys, values, with_prefix_slots(key_mask, p_k.size(-2)), dropout_p)[0]


def mix_in_prefix(q, k, v, key_mask, p_k, p_v, g, dropout_p):
    """(1 - lam) Attn(q, K, V) + lam Attn(q, P_K, P_V), lam = g Z_P / (g Z_P + Z_T); g: (B, 1, 1, 1)."""
    out_tokens, log_z_tokens = attend(q, k, v, key_mask, dropout_p, with_log_z=True)  # the frozen layer's call
    out_prefix, log_z_prefix = attend_prefix(q, p_k, p_v, dropout_p)  # (B, h, T, d), (B, h, T, 1)
    if log_z_tokens is None:  # the CUDA kernel's attention has no log Z_T: its stand-in for this step
        z_prefix, z_tokens = kernels.mass_shares(q, k, p_k, key_mask)
    else:  # Z_P and Z_T times a common factor exp(-top), which lam does not see (and no overflow)
        top = torch.maximum(log_z_prefix, log_z_tokens).detach()
        z_prefix, z_tokens = torch.exp(log_z_prefix - top), torch.exp(log_z_tokens - top)
    # Exactly 0 at g = 0, so the output is then out_tokens. The floor keeps 0 / 0 out (g = 0 and no
    # token: an example that is all padding) and 1 / denominator^2 finite in the backward; it is far
    # below any real mass (one of z_prefix, z_tokens is 1, or they sum to 1), so it changes no other lam
    # unless g * z_prefix + z_tokens itself falls below it (g < 1e-19 and no token, or as lopsided).
    lam = g * z_prefix / (g * z_prefix + z_tokens).clamp(min=1e-19)  # (B, h, T, 1)
    lam, out_prefix = lam.to(out_tokens.dtype), out_prefix.to(out_tokens.dtype)
    if kernels.enabled():
        return kernels.mix(out_tokens, out_prefix, lam)
    return (1 - lam) * out_tokens + lam * out_prefix


def attend_prefix(q, p_k, p_v, dropout_p) -> tuple[torch.Tensor, torch.Tensor]:
    """Attn(q, P_K, P_V) (B, h, T, d) and log Z_P (B, h, T, 1): `attend` over the L prefix keys, all attended."""
    if kernels.enabled():
        return kernels.attend_prefix(q, p_k, p_v, dropout_p)
    B, h, T, d = q.shape
    every_key = torch.ones(B, 1, 1, p_k.size(-2), dtype=torch.bool, device=q.device)
    return attend(q, p_k.expand(B, h, -1, d), p_v.expand(B, h, -1, d), every_key, dropout_p, with_log_z=True)


def with_prefix_slots(key_mask: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 1, 1, T) token mask -> (B, 1, 1, L + T): the L prefix slots are always attended."""
    return torch.cat([key_mask.new_ones(*key_mask.shape[:-1], length), key_mask], dim=-1)
