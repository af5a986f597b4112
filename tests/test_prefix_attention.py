"""The prefix path beyond the invariants: one code path for learned and forced gates, dropout in
training, and the official initialisation of every PELT module."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.gate import Gate, forced_gates
from minipelt.model.methods import PeltConfig
from minipelt.model.prefix import mix_in_prefix, prefix_attention

pytestmark = pytest.mark.usefixtures("each_path")  # every test with the kernels and on the textbook path

GATED = ["unipelt", "unipelt-ap", "prefix", "adapter", "lora"]


def batch(B=3, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, T - 3:] = 0  # one padded example
    return ids, mask


def trained_like(model: torch.nn.Module, seed: int) -> None:
    """Every parameter moved away from its init, as training would (the gates stay learned)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("method", GATED)
def test_a_learned_gate_that_is_exactly_zero_gives_the_frozen_model(method):
    """No branch on the gate's value: a gate computed as usual that comes out exactly 0 (its bias
    at -1e4, sigmoid = 0 in fp32) gives the frozen model bit for bit, like forced_gates(model, 0)."""
    torch.manual_seed(0)
    frozen = BertModel(TINY).eval()
    model = BertModel(TINY, PeltConfig.from_method(method, gated=True)).eval()
    model.load_state_dict(frozen.state_dict(), strict=False)
    trained_like(model.prefix if model.prefix is not None else torch.nn.Module(), 1)
    for gate in (m for m in model.modules() if isinstance(m, Gate)):
        torch.nn.init.constant_(gate.linear.bias, -1e4)
    ids, mask = batch()
    with torch.no_grad():
        got = model(ids, mask).last_hidden_state
        assert all((v == 0).all() for kinds in model.gate_values().values() for v in kinds.values())
        assert torch.equal(got, frozen(ids, mask).last_hidden_state)
        with forced_gates(model, 0.0):
            assert torch.equal(model(ids, mask).last_hidden_state, got)


def random_attention(seed, B=2, h=2, T=6, L=3, d=4, prefix_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, h, T, d, generator=g) for _ in range(3))
    prefix_kv = torch.randn(2, h, L, d, generator=g) * prefix_scale
    keep = torch.ones(B, 1, 1, T, dtype=torch.bool)
    keep[0, ..., T - 2:] = False
    return q, k, v, keep, prefix_kv


@pytest.mark.parametrize("gated", [False, True])
def test_training_mode_prefix_attention_is_an_unbiased_dropout_of_the_eval_one(gated):
    """Attention dropout in training (prefix probabilities included) keeps the expectation:
    the mean over many dropout draws approaches the eval output (seeded, so deterministic)."""
    q, k, v, keep, prefix_kv = random_attention(0)
    gate = torch.full((2, 1, 1), 0.7) if gated else None
    want = prefix_attention(q, k, v, keep, prefix_kv, gate)
    torch.manual_seed(0)
    draws = torch.stack([prefix_attention(q, k, v, keep, prefix_kv, gate, dropout_p=0.3) for _ in range(4000)])
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), want, atol=0.05, rtol=0)


def test_training_mode_drops_prefix_probabilities_too():
    """With the prefix holding almost all the attention mass (lam ~ 1), outputs still vary between
    dropout draws: the prefix's probabilities are dropped, as in the official code."""
    q, k, v, keep, prefix_kv = random_attention(1)
    q, p_k, p_v = q.abs(), 20 * prefix_kv[0].abs(), prefix_kv[1]  # q . p_k >> q . k
    g = torch.ones(2, 1, 1, 1)
    eval_out = mix_in_prefix(q, k, v, keep, p_k, p_v, g, 0.0)
    only_prefix = torch.softmax(q @ p_k.transpose(-1, -2) / 2, -1) @ p_v  # d = 4: scale 1/2
    assert (eval_out - only_prefix).abs().max() < 0.05  # lam ~ 1 indeed
    torch.manual_seed(0)
    a, b = (mix_in_prefix(q, k, v, keep, p_k, p_v, g, 0.5) for _ in range(2))
    assert (a - b).abs().max() > 0.1


def test_prefix_gate_forms_agree_at_gate_one_in_training_mode_without_dropout():
    q, k, v, keep, prefix_kv = random_attention(2)
    one = torch.ones(2, 1, 1)
    exact = prefix_attention(q, k, v, keep, prefix_kv, one, "attention")
    official = prefix_attention(q, k, v, keep, prefix_kv, one, "kv")
    torch.testing.assert_close(exact, official, atol=1e-5, rtol=1e-5)


# --- the official initialisation ---------------------------------------------------------------

def close_to_normal(t: torch.Tensor, std: float) -> bool:
    return abs(t.mean().item()) < 0.2 * std and abs(t.std().item() - std) < 0.1 * std


def test_every_pelt_module_starts_with_the_official_init():
    torch.manual_seed(0)
    H = 256  # enough values for the statistics
    config = type(TINY)(**{**TINY.__dict__, "hidden_size": H, "num_attention_heads": 4})
    model = SequenceClassifier(BertModel(config, PeltConfig.from_method("unipelt")), 2)
    layer, prefix = model.bert.encoder.layer[0], model.bert.prefix
    normal_002 = [prefix.embedding.weight, prefix.mlp[0].weight, prefix.mlp[2].weight,
                  layer.adapter.down.weight, layer.adapter.up.weight, model.classifier.weight]
    normal_002 += [g.linear.weight for g in layer.gates().values()]
    zeros = [prefix.mlp[0].bias, prefix.mlp[2].bias, layer.adapter.down.bias, layer.adapter.up.bias,
             model.classifier.bias, layer.attention.self.query.lora_B, layer.attention.self.value.lora_B]
    zeros += [g.linear.bias for g in layer.gates().values()]
    for w in normal_002:
        assert close_to_normal(w, 0.02), tuple(w.shape)
    assert all(torch.count_nonzero(z) == 0 for z in zeros)
    # LoRA A: kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std 1/sqrt(3 fan_in)
    lora_a = layer.attention.self.query.lora_A
    assert lora_a.abs().max() <= 1 / math.sqrt(H) and close_to_normal(lora_a, 1 / math.sqrt(3 * H))
    # what that gives: P_K, P_V start small (bert-base: std ~0.005), the prefix with a modest share
    assert prefix().std() < 0.05
