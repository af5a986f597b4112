"""A hand-written BERT encoder (Devlin et al., 2019) with UniPELT's hook points.

Read top to bottom: config -> embeddings -> one layer (where every PELT method enters) ->
model. Submodule names mirror the Hugging Face checkpoint keys
(`encoder.layer.3.attention.self.query.weight`, ...), so loading pretrained weights is a
key-by-key copy with shape checks (`load_pretrained`).

One post-LayerNorm layer, with x = h_in the layer input (B, T, H):

    q, k, v = W_Q x + b_Q, W_K x + b_K, W_V x + b_V      <- LoRA on W_Q, W_V   (lora.py)
    attn    = softmax(q k^T / sqrt(d) + mask) v          <- prefix keys/values (prefix.py)
    a       = LN1(dropout(W_O attn + b_O) + x)
    h_F     = dropout(W_2 gelu(W_1 a + b_1) + b_2)
    out     = LN2(h_F + a)                               <- adapter after FFN  (adapter.py)

With no method configured every hook is inert and this is the plain BERT.
"""
import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipelt.model.adapter import Adapter
from minipelt.model.attention import attend
from minipelt.model.gate import Gate
from minipelt.model.lora import LoRALinear
from minipelt.model.methods import PeltConfig, is_pelt_parameter
from minipelt.model.prefix import PrefixTuning, prefix_attention


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768  # H
    num_hidden_layers: int = 12  # N
    num_attention_heads: int = 12  # h; head size d = H / h
    intermediate_size: int = 3072  # FFN width
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        """Read a checkpoint's config.json, keeping the fields this encoder uses."""
        try:
            raw = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}): fetch the checkpoint's config.json again") from None
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {raw['hidden_act']!r} is not supported (exact gelu only)")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        for f in fields(cls):  # an int field takes an int, a float field any number (bool is neither)
            value = raw.get(f.name, f.default)
            if isinstance(value, bool) or not isinstance(value, int if f.type is int else (int, float)):
                raise ValueError(f"{path}: {f.name} must be {'an integer' if f.type is int else 'a number'}, "
                                 f"got {value!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if name in raw and not 0 <= raw[name] < 1:  # NaN fails this too
                raise ValueError(f"{path}: {name} must be a probability in [0, 1), got {raw[name]}")
        H, h = raw.get("hidden_size", cls.hidden_size), raw.get("num_attention_heads", cls.num_attention_heads)
        if h < 1 or H % h:
            raise ValueError(f"{path}: hidden_size ({H}) must be a multiple of num_attention_heads ({h}): H = h d")
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


@dataclass
class BertOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor  # (B, H)


def dense_layernorm(n_in: int, n_out: int, eps: float) -> nn.ModuleDict:
    return nn.ModuleDict(dict(dense=nn.Linear(n_in, n_out), LayerNorm=nn.LayerNorm(n_out, eps=eps)))


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)  # (T,)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(positions))
        return self.dropout(self.LayerNorm(x))  # (B, T, H)


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig, pelt: PeltConfig):
        super().__init__()
        H, eps = c.hidden_size, c.layer_norm_eps
        self.n_heads = c.num_attention_heads
        self.attn_dropout = c.attention_probs_dropout_prob
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        lora_r = pelt.lora_r if pelt.lora else 0  # r = 0: query/value are plain Linears
        lora_gated = pelt.lora and pelt.gated
        self.attention = nn.ModuleDict(dict(
            self=nn.ModuleDict(dict(
                query=LoRALinear(H, H, lora_r, pelt.lora_alpha, lora_gated),
                key=nn.Linear(H, H),
                value=LoRALinear(H, H, lora_r, pelt.lora_alpha, lora_gated),
            )),
            output=dense_layernorm(H, H, eps),
        ))
        self.intermediate = nn.ModuleDict(dict(dense=nn.Linear(H, c.intermediate_size)))
        self.output = dense_layernorm(c.intermediate_size, H, eps)
        # PELT submodules owned by the layer; None when their method is off.
        self.adapter = Adapter(H, pelt.reduction_factor, pelt.gated) if pelt.adapter else None
        self.prefix_gate = Gate(H) if pelt.prefix and pelt.gated else None
        self.prefix_gate_form = pelt.prefix_gate

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        return x.view(B, T, self.n_heads, H // self.n_heads).transpose(1, 2)  # (B, h, T, d)

    def forward(self, x, token_mask, prefix_kv=None):
        """x: (B, T, H) layer input; token_mask: (B, T) bool, True for real tokens and False for padding;
        prefix_kv: (2, h, L, d) this layer's prefix, or None."""
        sa = self.attention.self
        key_mask = token_mask[:, None, None, :]  # (B, 1, 1, T): every query attends to the real tokens only
        # LoRA enters inside query and value: W x + b + s * B A x (s = alpha/r or gate G_L).
        q = self.split_heads(sa.query(x, token_mask))  # (B, h, T, d)
        k = self.split_heads(sa.key(x))
        v = self.split_heads(sa.value(x, token_mask))
        p = self.attn_dropout if self.training else 0.0
        if prefix_kv is None:  # the frozen attention: softmax(q k^T / sqrt(d) + mask) v (attention.py)
            attn, _ = attend(q, k, v, key_mask, p)  # (B, h, T, d)
        else:  # prefix-tuning: attention over [P_K; K], [P_V; V], gate G_P on x (prefix.py)
            g_p = self.prefix_gate(x, token_mask) if self.prefix_gate is not None else None
            attn = prefix_attention(q, k, v, key_mask, prefix_kv, g_p, self.prefix_gate_form, p)
        attn = attn.transpose(1, 2).flatten(2)  # (B, T, H)

        ao = self.attention.output
        a = ao.LayerNorm(self.dropout(ao.dense(attn)) + x)
        h_f = self.dropout(self.output.dense(F.gelu(self.intermediate.dense(a))))  # FFN output
        residual = h_f + a
        out = self.output.LayerNorm(residual)
        # The adapter enters after the FFN: out = LN2(h_F + a + G_A * h_A), h_A from x_A = LN2(h_F + a).
        if self.adapter is not None:
            out = self.output.LayerNorm(self.adapter(out, residual, token_mask))
        return out  # (B, T, H)

    def gates(self) -> dict[str, Gate]:
        """This layer's gates by kind (only those that exist)."""
        sa = self.attention.self
        candidates = {
            "adapter": self.adapter.gate if self.adapter is not None else None,
            "prefix": self.prefix_gate,
            "lora_query": getattr(sa.query, "gate", None),
            "lora_value": getattr(sa.value, "gate", None),
        }
        return {kind: g for kind, g in candidates.items() if g is not None}


class BertModel(nn.Module):
    def __init__(self, config: BertConfig, pelt: PeltConfig = PeltConfig()):
        super().__init__()
        if pelt.adapter and pelt.reduction_factor > config.hidden_size:
            raise ValueError(f"--reduction-factor {pelt.reduction_factor} leaves the adapter no bottleneck units "
                             f"(hidden size {config.hidden_size}): use at most {config.hidden_size}")
        self.config, self.pelt = config, pelt
        c = config
        self.embeddings = BertEmbeddings(c)
        self.encoder = nn.ModuleDict(dict(layer=nn.ModuleList(BertLayer(c, pelt) for _ in range(c.num_hidden_layers))))
        self.pooler = nn.ModuleDict(dict(dense=nn.Linear(c.hidden_size, c.hidden_size)))
        self.prefix = (PrefixTuning(c.num_hidden_layers, c.num_attention_heads, c.hidden_size,
                                    pelt.prefix_length, pelt.prefix_hidden) if pelt.prefix else None)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> BertOutput:
        B, T = input_ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds the model's position table "
                             f"({self.config.max_position_embeddings}): truncate the input")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # attention_mask (B, T) 1/0, as a tokenizer gives it; the layers take it as a bool token_mask
        token_mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        x = self.embeddings(input_ids, token_type_ids)
        prefix_kv = self.prefix() if self.prefix is not None else None  # (N, 2, h, L, d)
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, token_mask, None if prefix_kv is None else prefix_kv[i])
        pooled = torch.tanh(self.pooler.dense(x[:, 0]))  # BERT's pooler: the [CLS] token
        return BertOutput(last_hidden_state=x, pooler_output=pooled)

    def gate_values(self) -> dict[int, dict[str, torch.Tensor]]:
        """The last forward's gate values, {layer: {kind: (B,)}}."""
        out = {}
        for i, layer in enumerate(self.encoder.layer):
            values = {kind: g.last for kind, g in layer.gates().items() if g.last is not None}
            if values:
                out[i] = values
        return out

    @classmethod
    def from_pretrained(cls, model: str | Path, pelt: PeltConfig = PeltConfig()) -> "BertModel":
        """A fetched model name (see `minipelt.weights`) or a directory -> model in eval mode."""
        from minipelt.weights import read_bert_safetensors, resolve_model  # here: keeps `-m minipelt.weights` clean

        directory = resolve_model(model)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory} has no config.json: a model directory holds the "
                                    f"checkpoint's config.json next to model.safetensors")
        bert = cls(BertConfig.from_json(directory / "config.json"), pelt)
        bert.load_pretrained(read_bert_safetensors(directory / "model.safetensors"), directory)
        return bert.eval()

    @torch.no_grad()
    def load_pretrained(self, state: dict[str, torch.Tensor], source) -> None:
        """Copy pretrained tensors into the base (non-PELT) parameters, key by key.

        Every missing, unexpected or mis-shaped tensor is reported at once, by name. A
        checkpoint without a pooler keeps the random pooler (use mean pooling then).
        """
        own = {n: p for n, p in self.named_parameters() if not is_pelt_parameter(n)}
        missing = sorted(set(own) - set(state))
        if set(missing) == {"pooler.dense.weight", "pooler.dense.bias"}:
            missing = []  # a checkpoint saved without its pooler (half a pooler is an error)
        unexpected = sorted(set(state) - set(own))
        misshaped = [f"{n}: checkpoint {tuple(state[n].shape)} vs model {tuple(p.shape)}"
                     for n, p in own.items() if n in state and state[n].shape != p.shape]
        if missing or unexpected or misshaped:
            lines = ([f"  missing: {n}" for n in missing] + [f"  unexpected: {n}" for n in unexpected]
                     + [f"  wrong shape: {s}" for s in misshaped])
            raise ValueError(f"weights in {source} do not fit this BERT config:\n" + "\n".join(lines)
                             + "\nCheck that config.json belongs to these weights.")
        for n, p in own.items():
            if n in state:
                p.copy_(state[n])
