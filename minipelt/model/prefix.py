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

Unified view (He et al., ICLR 2022):

    Attn(q, [P_K; K], [P_V; V]) = (1 - lam) Attn(q, K, V) + lam Attn(q, P_K, P_V)
    lam = Z_P / (Z_P + Z_T),   Z_X = sum_j exp(q . x_j / sqrt(d)) over the block X

UniPELT's gate G_P (on the layer input) enters in one of two forms:
- "attention" (default, minipelt): the gate scales the prefix's attention mass,
  lam = G_P Z_P / (G_P Z_P + Z_T). At G_P = 0, lam = 0 and the output *is* Attn(q, K, V),
  bit for bit: the frozen layer. This is computed as the right-hand side above: the token
  part by the frozen layer's own call, which also gives log Z_T (attention.py), the prefix
  part from its L keys alone (`attend_prefix`), mixed in afterwards (one fused call over
  [P_K; K] would sum in another order and not give the frozen bits). Where the frozen call
  gives no log Z_T (CUDA), exactness costs one more fused pass over the keys, for lam.
- "kv" (official code): P_K, P_V are multiplied by G_P. At G_P = 0 the prefix keys are 0,
  each still takes exp(0) of attention mass, so the layer does NOT reduce to the frozen one.
Ungated prefix-tuning and the "kv" form have no exactness to keep: they run the left-hand
side, one `attend` over [P_K; K], [P_V; V], as fast as the plain attention.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from minipelt.model.attention import attend, dropout


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
    """(1 - lam) Attn(q, K, V) + lam Attn(q, P_K, P_V), lam = g Z_P / (g Z_P + Z_T); g: (B, 1, 1, 1).

    Attn(q, K, V) and log Z_T come from the frozen layer's own call (attention.py), Attn(q, P_K, P_V)
    and log Z_P from the T x L prefix scores (`attend_prefix`). Where the frozen call gives no
    log Z_T (CUDA), the masses come from one more fused call (`mass_shares`).
    """
    out_tokens, log_z_tokens = attend(q, k, v, key_mask, dropout_p, with_log_z=True)  # the frozen call
    out_prefix, log_z_prefix = attend_prefix(q, p_k, p_v, dropout_p)
    if log_z_tokens is None:
        z_prefix, z_tokens = mass_shares(q, k, p_k, key_mask)
    else:
        top = torch.maximum(log_z_prefix, log_z_tokens).detach()  # a common factor: lam does not see it
        z_prefix, z_tokens = torch.exp(log_z_prefix - top), torch.exp(log_z_tokens - top)
    # Exactly 0 at g = 0 (the clamp keeps 0 / 0 out), so the output is then out_tokens.
    lam = g * z_prefix / (g * z_prefix + z_tokens).clamp(min=torch.finfo(z_tokens.dtype).tiny)
    # Not in place into out_tokens: F.scaled_dot_product_attention's backward (CUDA) reads its output.
    return torch.lerp(out_tokens, out_prefix.to(out_tokens.dtype), lam.to(out_tokens.dtype))


def attend_prefix(q, p_k, p_v, dropout_p) -> tuple[torch.Tensor, torch.Tensor]:
    """Attn(q, P_K, P_V) (B, h, T, d) and log Z_P (B, h, T, 1) in fp32, over the L prefix keys only.

    The scores are laid out (h, L, B T), the L keys on the rows: one wide GEMM per head and a
    softmax down the rows, both several times faster on CPU than over (B, h, T, L), whose rows
    of L = 10 leave the vector units idle. Dropout as on the tokens' probabilities.
    """
    B, h, T, d = q.shape
    queries = q.transpose(1, 2).reshape(B * T, h, d).transpose(0, 1)  # (h, BT, d): a view of the layer's q
    p_k = (p_k * d ** -0.5).to(q.dtype)  # the 1/sqrt(d) on the L keys: a smaller pass than on the scores
    scores = torch.bmm(p_k, queries.transpose(1, 2)).float()  # (h, L, BT)
    top = scores.amax(dim=1, keepdim=True).detach()  # softmax's shift; log Z_P adds it back
    unnormalised = torch.exp(scores - top)
    z = unnormalised.sum(dim=1, keepdim=True)  # (h, 1, BT)
    probs = unnormalised / z
    if dropout_p > 0:
        probs = dropout(probs, dropout_p)
    out = torch.bmm(probs.transpose(1, 2).to(q.dtype), p_v.to(q.dtype))  # (h, BT, d)
    log_z = top + z.log()  # (h, 1, BT)
    return out.view(h, B, T, d).transpose(0, 1), log_z.view(h, B, T, 1).transpose(0, 1)


def mass_shares(q, k, p_k, key_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """rho = Z_P / (Z_P + Z_T) and tau = Z_T / (Z_P + Z_T), each (B, h, T, 1), from one fused call
    over [P_K; K] whose values are indicator columns, (1, 0) on prefix keys and (0, 1) on token
    keys, without materialising T x T scores."""
    B, h, T, d = q.shape
    L = p_k.size(-2)
    which = q.new_zeros(L + T, d, dtype=torch.float32)  # as wide as the keys: the fused kernels want that
    which[:L, 0], which[L:, 1] = 1, 1
    keys = torch.cat([p_k.expand(B, h, L, d), k], dim=2)  # (B, h, L + T, d)
    with torch.autocast(q.device.type, enabled=False):  # fp32 shares: precise
        shares = F.scaled_dot_product_attention(q.float(), keys.float(), which.expand(B, h, L + T, d),
                                                attn_mask=with_prefix_slots(key_mask, L))
    return shares[..., :1], shares[..., 1:2]


def with_prefix_slots(key_mask: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 1, 1, T) token mask -> (B, 1, 1, L + T): the L prefix slots are always attended."""
    return torch.cat([key_mask.new_ones(*key_mask.shape[:-1], length), key_mask], dim=-1)
