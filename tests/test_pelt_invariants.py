"""Invariants every PELT method must keep, checked on a tiny random BERT over random batches.

The central one (docs/unipelt.md, "Exactness argument"): every PELT contribution enters as
`frozen_value + G * delta`, so with every gate forced to 0 a gated model IS the frozen BERT,
bit for bit, however far its PELT weights have trained. The others pin down the prefix
attention at any gate value, what the adapter reads, what the gates look like in normal
use, that padding changes nothing, that an optimiser step moves exactly the trainable
parameters, and which parameters those are for each method. Hypothesis draws the batches
and, per example, the 'trained' PELT weights (a seed for `perturb`).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES, TINY, write_tiny_bert
from hypothesis import given, settings
from hypothesis import strategies as st

from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.gate import forced_gates
from minipelt.model.methods import PeltConfig, is_trainable, mark_trainable, trainable_state_dict
from minipelt.model.prefix import prefix_attention

pytestmark = pytest.mark.usefixtures("each_path")  # every test with the kernels and on the textbook path

METHODS = ("finetune", "bitfit", "adapter", "prefix", "lora", "unipelt-ap", "unipelt",
           "adapter+lora", "adapter+prefix", "prefix+lora")
LAYERS = range(TINY.num_hidden_layers)
NUM_LABELS = 3


def has_gates(pelt: PeltConfig) -> bool:
    return pelt.adapter or pelt.prefix or pelt.lora


def all_configs() -> list[PeltConfig]:
    """Every method, gated and ungated where gates exist (duplicates such as
    unipelt-ap(gated=False) == adapter+prefix dropped)."""
    configs = []
    for method in METHODS:
        for gated in (False, True):
            pelt = PeltConfig.from_method(method, gated=gated)
            if (gated and not has_gates(pelt)) or pelt in configs:
                continue
            configs.append(pelt)
    return configs


CONFIGS = all_configs()
GATED = [c for c in CONFIGS if c.gated]
UNGATED = [c for c in CONFIGS if not c.gated]


def test_config_list_covers_every_method():
    names = {c.name for c in CONFIGS}
    assert {"finetune", "bitfit", "adapter", "adapter(gated)", "prefix(gated)", "lora(gated)",
            "unipelt-ap", "unipelt", "adapter+prefix+lora", "prefix+lora", "adapter+lora(gated)"} <= names
    assert len(GATED) == 7 and len(UNGATED) == 9  # 7 non-empty subsets of {A, P, L}; + finetune, bitfit


@torch.no_grad()
def perturb(bert: BertModel, pelt: PeltConfig, std: float = 0.3, seed: int = 0) -> None:
    """'Train' the model: add noise to every parameter the method trains (PELT modules, gates,
    lora_B which starts at 0; the biases under BitFit; everything under fine-tuning)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in bert.named_parameters():
        if is_trainable("bert." + name, pelt):
            p.add_(std * torch.randn(p.shape, generator=g))


seeds = st.integers(0, 2**32 - 1)  # for perturb: the PELT weights of one example


@st.composite
def batches(draw, max_batch: int = 4, max_len: int = 12):
    """(input_ids, attention_mask, token_type_ids): any padding pattern whose first token is real.

    Masked positions hold random (non-pad) ids, so anything that leaks through the mask shows."""
    B, T = draw(st.integers(1, max_batch)), draw(st.integers(1, max_len))
    bits = draw(st.lists(st.lists(st.booleans(), min_size=T - 1, max_size=T - 1), min_size=B, max_size=B))
    mask = torch.tensor([[1] + [int(b) for b in row] for row in bits])  # (B, T)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    ids = torch.randint(1, TINY.vocab_size, (B, T), generator=g)
    types = torch.randint(0, TINY.type_vocab_size, (B, T), generator=g)
    return ids, mask, types


class Zoo:
    """One tiny base checkpoint; models built from it once per method and cached."""

    def __init__(self, directory):
        self.directory = directory
        self.frozen = BertModel.from_pretrained(directory)  # PeltConfig(): no method
        self._cache = {}

    def frozen_on(self, device: str) -> BertModel:
        return self.cached(("frozen", device), lambda: BertModel.from_pretrained(self.directory).to(device))

    def cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def trained(self, pelt: PeltConfig, seed: int = 0) -> BertModel:
        bert = BertModel.from_pretrained(self.directory, pelt)  # eval mode; a few ms at this size
        perturb(bert, pelt, seed=seed)
        return bert


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("base") / "tiny"
    write_tiny_bert(directory)
    return Zoo(directory)


def run(bert, batch, grad: bool = False):
    """The model's outputs on `batch`, computed on the model's device; `grad`: with autograd on
    (on CPU attention then takes another path, minipelt/model/attention.py)."""
    device = next(bert.parameters()).device
    with torch.set_grad_enabled(grad):
        out = bert(*(None if t is None else t.to(device) for t in batch))
    return out.last_hidden_state.detach(), out.pooler_output.detach()


# --- gate 0 == frozen model ------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("pelt", GATED, ids=lambda c: c.name)
@settings(max_examples=30, deadline=None)
@given(batch=batches(), seed=seeds)
def test_gates_at_zero_give_the_frozen_model_bit_for_bit(zoo, pelt, grad, batch, seed, device):
    bert = zoo.trained(pelt, seed).to(device)
    frozen_hidden, frozen_pooled = run(zoo.frozen_on(device), batch, grad)
    with forced_gates(bert, 0.0):
        hidden, pooled = run(bert, batch, grad)
    assert torch.equal(hidden, frozen_hidden)
    assert torch.equal(pooled, frozen_pooled)
    # Not vacuous: the same trained model with its gates free does differ from the frozen one.
    hidden, _ = run(bert, batch)
    assert not torch.allclose(hidden, frozen_hidden, atol=1e-4)


@pytest.mark.parametrize("pelt", UNGATED, ids=lambda c: c.name)
@settings(max_examples=10, deadline=None)
@given(batch=batches(), seed=seeds)
def test_ungated_methods_change_the_model_once_trained(zoo, pelt, batch, seed):
    """No gates to force, so forced_gates is a no-op; the trained weights must show (hooks live)."""
    bert = zoo.trained(pelt, seed)
    frozen_hidden, frozen_pooled = run(zoo.frozen, batch)
    with forced_gates(bert, 0.0):
        hidden, pooled = run(bert, batch)
    assert not torch.allclose(hidden, frozen_hidden, atol=1e-4)
    assert not torch.allclose(pooled, frozen_pooled, atol=1e-4)
    assert bert.gate_values() == {}


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@settings(max_examples=25, deadline=None)
@given(batch=batches())
def test_lora_at_init_is_the_frozen_model(zoo, gated, batch):
    # B = 0 at init, so s * B (A x) is exactly 0 whatever s (alpha / r, or a free gate).
    pelt = PeltConfig.from_method("lora", gated=gated)
    bert = zoo.cached(("init", pelt), lambda: BertModel.from_pretrained(zoo.directory, pelt))
    hidden, pooled = run(bert, batch)
    frozen_hidden, frozen_pooled = run(zoo.frozen, batch)
    assert torch.equal(hidden, frozen_hidden)
    assert torch.equal(pooled, frozen_pooled)


def test_official_kv_prefix_gate_at_zero_is_not_the_frozen_model(zoo):
    """The official code multiplies P_K, P_V by G_P. At G_P = 0 the L prefix keys are all 0,
    so each still gets score q . 0 = 0 and attention mass exp(0) = 1 against the tokens' Z_T:
    the token attention is scaled down by Z_T / (Z_T + L) (the zero values add nothing back).
    The layer is therefore NOT the frozen layer, which is why minipelt's default gate form,
    "attention", scales the prefix's attention mass instead (lam -> G_P Z_P / (G_P Z_P + Z_T))."""
    attention = zoo.trained(PeltConfig.from_method("prefix", gated=True))
    kv = BertModel.from_pretrained(zoo.directory, PeltConfig.from_method("prefix", gated=True, prefix_gate="kv"))
    kv.load_state_dict(attention.state_dict())  # the same trained weights, the other gate form
    batch = (torch.randint(1, TINY.vocab_size, (2, 7)), torch.ones(2, 7, dtype=torch.long), None)
    frozen_hidden, _ = run(zoo.frozen, batch)
    with forced_gates(kv, 0.0):
        kv_hidden, _ = run(kv, batch)
    with forced_gates(attention, 0.0):
        attention_hidden, _ = run(attention, batch)
    assert not torch.allclose(kv_hidden, frozen_hidden, atol=1e-3)
    assert torch.equal(attention_hidden, frozen_hidden)
    # At G_P = 1 both forms are plain (ungated) prefix-tuning.
    with forced_gates(kv, 1.0):
        kv_hidden, _ = run(kv, batch)
    with forced_gates(attention, 1.0):
        attention_hidden, _ = run(attention, batch)
    torch.testing.assert_close(kv_hidden, attention_hidden, atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_prefix_mixing_equals_softmax_over_prefix_and_tokens(data):
    """Both computations of prefix_attention (the exact mixture when gated in the "attention"
    form, one fused call otherwise) equal attention over [P_K; K], [P_V; V], with log G added
    to the prefix scores (the mixture at G = 1 is plain prefix-tuning)."""
    B, T, L = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    h, d = 2, 4
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    q, k, v = (torch.randn(B, h, T, d, generator=g) for _ in range(3))
    prefix_kv = torch.randn(2, h, L, d, generator=g)
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    keep = (torch.arange(T)[None] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T)
    gate = torch.rand(B, 1, 1, generator=g)
    keys = torch.cat([prefix_kv[0].expand(B, h, L, d), k], dim=2)
    values = torch.cat([prefix_kv[1].expand(B, h, L, d), v], dim=2)
    for got, log_g in ((prefix_attention(q, k, v, keep, prefix_kv, gate=None), 0.0),
                       (prefix_attention(q, k, v, keep, prefix_kv, torch.ones(B, 1, 1)), 0.0),
                       (prefix_attention(q, k, v, keep, prefix_kv, gate), gate.log()[..., None])):
        bias = torch.zeros(B, 1, 1, L + T) + torch.cat([torch.zeros(B, 1, 1, L) + log_g,
                                                        torch.zeros(B, 1, 1, T).masked_fill(~keep, -math.inf)], -1)
        want = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# --- what the prefix and the adapter compute, from the layer's own modules -------------------

def forward_capturing(bert: BertModel, batch, modules: dict, gate: float | None = None) -> dict:
    """Run `bert` (every gate forced to `gate` unless None) and return, for each key of
    `modules`, that module's (first input, output) in the run."""
    seen = {}
    hooks = [m.register_forward_hook(lambda m, args, out, key=key: seen.__setitem__(key, (args[0], out)))
             for key, m in modules.items()]
    try:
        if gate is None:
            run(bert, batch)
        else:
            with forced_gates(bert, gate):
                run(bert, batch)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, H = x.shape
    return x.view(B, T, n_heads, H // n_heads).transpose(1, 2)  # (B, h, T, d)


PREFIXED = [PeltConfig.from_method("prefix"), PeltConfig.from_method("prefix", gated=True),
            PeltConfig.from_method("unipelt")]


@pytest.mark.parametrize("pelt", PREFIXED, ids=lambda c: c.name)
@settings(max_examples=30, deadline=None)
@given(batch=batches(), seed=seeds, gate=st.floats(0, 1, exclude_min=True, exclude_max=True))
def test_prefix_attention_is_a_softmax_over_prefix_and_tokens_with_log_gate(zoo, pelt, batch, seed, gate):
    """With every gate at G, each layer's attention is the softmax over [prefix; tokens] with
    log G added to the prefix scores: G scales the prefix's attention mass (the "attention"
    gate form; ungated, G = 1). Written out from the layer's q, k, v modules and bert.prefix()."""
    bert = zoo.trained(pelt, seed)
    mask = batch[1]
    heads = bert.config.num_attention_heads
    layers = bert.encoder.layer
    # Each layer's input h_in, and its attention output: the input of attention.output.dense.
    seen = forward_capturing(bert, batch, {**{(i, "h_in"): layer for i, layer in enumerate(layers)},
                                           **{i: layer.attention.output.dense for i, layer in enumerate(layers)}},
                             gate)
    log_gate = math.log(gate) if pelt.gated else 0.0
    with torch.no_grad(), forced_gates(bert, gate):  # LoRA's gates too, in sa.query and sa.value
        prefix_kv = bert.prefix()  # (N, 2, h, L, d)
        for i, layer in enumerate(layers):
            sa, h_in = layer.attention.self, seen[i, "h_in"][0]
            q, k, v = (split_heads(m(h_in), heads) for m in (sa.query, sa.key, sa.value))  # (B, h, T, d)
            p_k, p_v = prefix_kv[i]  # (h, L, d)
            scale = q.size(-1) ** -0.5
            s_prefix = (q @ p_k.transpose(-1, -2)) * scale + log_gate  # (B, h, T, L)
            s_tokens = ((q @ k.transpose(-1, -2)) * scale).masked_fill(mask[:, None, None, :] == 0, -math.inf)
            probs = torch.softmax(torch.cat([s_prefix, s_tokens], dim=-1), dim=-1)  # (B, h, T, L + T)
            want = probs @ torch.cat([p_v.expand(q.size(0), -1, -1, -1), v], dim=2)  # (B, h, T, d)
            torch.testing.assert_close(split_heads(seen[i][0], heads), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pelt", [PeltConfig.from_method("adapter"), PeltConfig.from_method("unipelt")],
                         ids=lambda c: c.name)
@settings(max_examples=20, deadline=None)
@given(batch=batches(), seed=seeds)
def test_adapter_reads_ln2_of_ffn_plus_attention_output(zoo, pelt, batch, seed):
    """x_A = LN2(h_F + a), the frozen layer's output (the paper's h_FN), not h_F alone; and the
    adapter's output h_A = W_up relu(W_down x_A), gated, enters as LN2(G_A h_A + h_F + a), through
    the same LN2."""
    bert = zoo.trained(pelt, seed)
    modules = {}
    for i, layer in enumerate(bert.encoder.layer):
        modules |= {(i, "a"): layer.attention.output.LayerNorm, (i, "h_f"): layer.output.dense,
                    (i, "adapter"): layer.adapter, (i, "layer"): layer}
    seen = forward_capturing(bert, batch, modules)
    with torch.no_grad():
        for i, layer in enumerate(bert.encoder.layer):
            (_, a), (_, h_f) = seen[i, "a"], seen[i, "h_f"]  # eval mode: no dropout on h_F
            x_a, with_adapter = seen[i, "adapter"]
            adapter, ln2 = layer.adapter, layer.output.LayerNorm
            h_a = adapter.up(torch.relu(adapter.down(x_a)))
            g_a = adapter.gate.last[:, None, None] if adapter.gate is not None else 1.0  # this forward's G_A
            torch.testing.assert_close(x_a, ln2(h_f + a), atol=1e-6, rtol=0)
            torch.testing.assert_close(with_adapter, g_a * h_a + h_f + a, atol=1e-6, rtol=0)
            torch.testing.assert_close(seen[i, "layer"][1], ln2(g_a * h_a + h_f + a), atol=1e-6, rtol=0)


# --- padding, gate values --------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pooling", ["cls", "mean"])
@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 8), min_size=1, max_size=4), extra=st.integers(1, 4),
       seed=seeds)
def test_padding_changes_neither_logits_nor_gates(zoo, pooling, lengths, extra, seed, device):
    """Every method on (unipelt): each example of a right-padded batch (with `extra` more pad
    columns than needed) gives the logits and gate values it gives alone."""
    model = SequenceClassifier(zoo.trained(PeltConfig.from_method("unipelt"), seed), NUM_LABELS, pooling)
    model = model.eval().to(device)
    g = torch.Generator().manual_seed(seed)
    T = max(lengths) + extra
    ids = torch.randint(1, TINY.vocab_size, (len(lengths), T), generator=g).to(device)  # pads: random ids
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long().to(device)
    with torch.no_grad():
        logits = model(ids, mask)
        gates = model.bert.gate_values()
        for i, n in enumerate(lengths):
            alone = model(ids[i:i + 1, :n])  # no mask: all real
            alone_gates = model.bert.gate_values()
            torch.testing.assert_close(logits[i], alone[0], atol=1e-5, rtol=0)
            assert gates.keys() == alone_gates.keys()
            for layer, kinds in gates.items():
                assert kinds.keys() == alone_gates[layer].keys()
                for kind, values in kinds.items():
                    torch.testing.assert_close(values[i], alone_gates[layer][kind][0], atol=1e-5, rtol=0)


@settings(max_examples=40, deadline=None)
@given(batch=batches(), seed=seeds)
def test_gates_lie_strictly_between_0_and_1(zoo, batch, seed):
    bert = zoo.trained(PeltConfig.from_method("unipelt"), seed)  # gate weights perturbed by N(0, 0.3)
    run(bert, batch)
    values = torch.cat([v for kinds in bert.gate_values().values() for v in kinds.values()])
    assert values.numel() == 4 * TINY.num_hidden_layers * batch[0].shape[0]
    assert ((values > 0) & (values < 1)).all(), values


def test_gate_values_structure_keeps_only_the_last_forward(zoo):
    bert = BertModel.from_pretrained(zoo.directory, PeltConfig.from_method("unipelt"))
    assert bert.gate_values() == {}  # nothing before the first forward
    run(bert, (torch.randint(1, TINY.vocab_size, (3, 5)), None, None))
    first = bert.gate_values()
    assert list(first) == list(LAYERS)
    for kinds in first.values():
        assert set(kinds) == {"adapter", "prefix", "lora_query", "lora_value"}
        assert all(v.shape == (3,) and not v.requires_grad for v in kinds.values())
    run(bert, (torch.randint(1, TINY.vocab_size, (1, 9)), None, None))
    second = bert.gate_values()
    assert all(v.shape == (1,) for kinds in second.values() for v in kinds.values())
    with forced_gates(bert, 0.0):
        run(bert, (torch.randint(1, TINY.vocab_size, (2, 4)), None, None))
    assert all(torch.equal(v, torch.zeros(2)) for kinds in bert.gate_values().values() for v in kinds.values())
    # Only the gates of the methods that are on, and only when gated.
    bert = BertModel.from_pretrained(zoo.directory, PeltConfig.from_method("adapter+lora", gated=True))
    run(bert, (torch.randint(1, TINY.vocab_size, (2, 4)), None, None))
    assert {k for kinds in bert.gate_values().values() for k in kinds} == {"adapter", "lora_query", "lora_value"}


def test_each_gate_reads_the_input_the_paper_says(zoo):
    """G_P and G_L read the layer input h_in, G_A the adapter input x_A = LN2(h_F + a); each is
    mean over real tokens of sigmoid(W_g h + b_g)."""
    bert = zoo.trained(PeltConfig.from_method("unipelt"))
    inputs = {}
    hooks = [layer.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__((i, "h_in"), args))
             for i, layer in enumerate(bert.encoder.layer)]
    hooks += [layer.adapter.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__((i, "x_a"), args[0]))
              for i, layer in enumerate(bert.encoder.layer)]
    ids = torch.randint(1, TINY.vocab_size, (3, 6))
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0]])
    try:
        run(bert, (ids, mask, None))
    finally:
        for hook in hooks:
            hook.remove()

    def expected(gate, h):
        per_token = torch.sigmoid(gate.linear(h)).squeeze(-1)  # (B, T)
        return (per_token * mask).sum(1) / mask.sum(1)

    values = bert.gate_values()
    with torch.no_grad():
        for i, layer in enumerate(bert.encoder.layer):
            h_in, token_mask = inputs[i, "h_in"][:2]  # the layer's one mask: (B, T) bool
            assert torch.equal(token_mask, mask.bool())
            sa = layer.attention.self
            x_a = inputs[i, "x_a"]
            for kind, gate, h in (("prefix", layer.prefix_gate, h_in), ("lora_query", sa.query.gate, h_in),
                                  ("lora_value", sa.value.gate, h_in), ("adapter", layer.adapter.gate, x_a)):
                torch.testing.assert_close(values[i][kind], expected(gate, h), atol=1e-6, rtol=0)


@settings(max_examples=10, deadline=None)
@given(batch=batches(), seed=seeds)
def test_lora_gate_replaces_the_alpha_over_r_scaling(zoo, batch, seed):
    """Gated: y = W x + b + G_L B A x (no alpha/r). So a gated LoRA whose gates are pinned to
    alpha/r = 2 is the ungated LoRA with the same A, B."""
    gated = zoo.trained(PeltConfig.from_method("lora", gated=True), seed)
    ungated = BertModel.from_pretrained(zoo.directory, PeltConfig.from_method("lora"))
    ungated.load_state_dict({n: t for n, t in gated.state_dict().items() if ".gate." not in n})
    with forced_gates(gated, ungated.pelt.lora_alpha / ungated.pelt.lora_r):
        hidden, pooled = run(gated, batch)
    want_hidden, want_pooled = run(ungated, batch)
    torch.testing.assert_close(hidden, want_hidden, atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled, want_pooled, atol=1e-6, rtol=0)


# --- training moves exactly the trainable parameters ------------------------------------------

def zero_grad_at_init(name: str, pelt: PeltConfig) -> bool:
    """Parameters whose gradient is exactly 0 at the first step, for a mathematical reason.

    LoRA's delta is s * B (A x) with B = 0 at init, so dL/dA = s * B^T (...) = 0, and a LoRA
    gate's dL/dG_L = <dL/dy, B A x> = 0. The first step makes B non-zero (dL/dB = s (...) (A x)^T
    is not 0), after which A and the LoRA gates get gradients too."""
    parts = name.split(".")
    return "lora_A" in parts or ("gate" in parts and ("query" in parts or "value" in parts))


def key_bias(name: str) -> bool:
    """dL/db_K = 0 in exact arithmetic: b_K adds q . b_K to every key score of a query, and a
    softmax ignores a constant shift. (Not so with a prefix, whose keys bypass W_K; but key
    biases train only under bitfit and finetune here.) Numerically it is ~1e-10, not 0."""
    return name.endswith("attention.self.key.bias")


@pytest.mark.parametrize("pelt", CONFIGS, ids=lambda c: c.name)
def test_optimizer_steps_move_exactly_the_trainable_parameters(zoo, pelt):
    torch.manual_seed(0)
    model = SequenceClassifier(BertModel.from_pretrained(zoo.directory, pelt), NUM_LABELS).train()
    mark_trainable(model, pelt)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert set(trainable) == set(trainable_state_dict(model, pelt))
    # Small steps: one of lr 1e-2 can leave the adapter's 2 ReLU units (hidden 32 / 16) dead, with no gradient.
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
    ids = torch.randint(1, TINY.vocab_size, (4, 8))
    mask = torch.ones_like(ids)
    mask[1, 5:], mask[3, 2:] = 0, 0
    labels = torch.tensor([0, 1, 2, 1])

    grads = []
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(ids, mask), labels).backward()
        grads.append({n: p.grad.clone() for n, p in trainable.items()})
        optimizer.step()

    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None, n
            assert torch.equal(p, frozen[n]), f"frozen parameter {n} moved"
    for n in trainable:
        if key_bias(n):
            assert all(g[n].abs().max() < 1e-7 for g in grads), n
            continue
        first, second = grads[0][n].count_nonzero(), grads[1][n].count_nonzero()
        if zero_grad_at_init(n, pelt):
            assert first == 0, f"{n}: B = 0 at init, so its first gradient must be exactly 0"
        else:
            assert first > 0, f"{n} got no gradient at the first step"
        assert second > 0, f"{n} got no gradient at the second step"


# --- the trainable set of each method ---------------------------------------------------------

def expected_trainable(model: SequenceClassifier, pelt: PeltConfig) -> set[str]:
    """Written out by hand from the parameter names, independently of is_trainable."""
    if pelt.finetune:
        return {n for n, _ in model.named_parameters()}
    layer = "bert.encoder.layer.{}."
    expected = {"classifier.weight", "classifier.bias"}

    def per_layer(*names):
        return {layer.format(i) + n for i in LAYERS for n in names}

    def gate(at):
        return (at + ".linear.weight", at + ".linear.bias") if pelt.gated else ()

    if pelt.bitfit:
        expected |= {"bert.embeddings.LayerNorm.bias", "bert.pooler.dense.bias"}
        expected |= per_layer(*(f"attention.self.{m}.bias" for m in ("query", "key", "value")),
                              "attention.output.dense.bias", "attention.output.LayerNorm.bias",
                              "intermediate.dense.bias", "output.dense.bias", "output.LayerNorm.bias")
    if pelt.adapter:
        expected |= per_layer("adapter.down.weight", "adapter.down.bias", "adapter.up.weight",
                              "adapter.up.bias", *gate("adapter.gate"))
    if pelt.prefix:
        expected |= {"bert.prefix.embedding.weight", "bert.prefix.mlp.0.weight", "bert.prefix.mlp.0.bias",
                     "bert.prefix.mlp.2.weight", "bert.prefix.mlp.2.bias"}
        expected |= per_layer(*gate("prefix_gate"))
    if pelt.lora:
        for m in ("query", "value"):
            expected |= per_layer(f"attention.self.{m}.lora_A", f"attention.self.{m}.lora_B",
                                  *gate(f"attention.self.{m}.gate"))
    return expected


@pytest.mark.parametrize("pelt", CONFIGS, ids=lambda c: c.name)
def test_trainable_set_is_exactly_the_methods_parameters(zoo, pelt):
    bert = BertModel(TINY, pelt)
    model = SequenceClassifier(bert, NUM_LABELS)
    expected = expected_trainable(model, pelt)
    names = [n for n, _ in model.named_parameters()]
    assert {n for n in names if is_trainable(n, pelt)} == expected
    assert set(trainable_state_dict(model, pelt)) == expected
    mark_trainable(model, pelt)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    if pelt.bitfit:
        assert len(expected) == 2 + 2 + 8 * TINY.num_hidden_layers  # head + emb LN, pooler + 8 per layer
    if pelt.prefix:  # after folding, P_K, P_V replace the MLP
        bert.prefix.fold()
        prefix_keys = {n for n in trainable_state_dict(model, pelt) if n.startswith("bert.prefix.")}
        assert prefix_keys == {"bert.prefix.folded"}
