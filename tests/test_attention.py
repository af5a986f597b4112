"""minipelt/model/attention.py's ways to the same attention, and prefix.py's two ways to the attention masses.

On CPU attend takes the fused kernel's entry point without a gradient and writes the
attention out with one; on CUDA it calls F.scaled_dot_product_attention and the gated prefix
takes its masses from `mass_shares`. Each way must give the same attention, log Z_T and lam,
and the first must give F.scaled_dot_product_attention's bits (that is the reason to take it).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import minipelt.model.prefix
from minipelt.model.attention import attend, dropout
from minipelt.training.device import cpu_has_bf16
from minipelt.model.prefix import attend_prefix, mass_shares, mix_in_prefix


@st.composite
def attention_inputs(draw, h=2, d=8):
    """q, k, v (B, h, T, d), a key mask with any padding (the first token real), a prefix (2, h, L, d)."""
    B, T, L = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q, k, v = (2 * torch.randn(B, h, T, d, generator=g) for _ in range(3))
    lengths = torch.tensor(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    keep = (torch.arange(T)[None] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T)
    return q, k, v, keep, torch.randn(2, h, L, d, generator=g)


def written_out(q, k, keep):
    """The masked scores (B, h, T, T) and log Z_T, in float64."""
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~keep, -math.inf)
    return scores, torch.logsumexp(scores, dim=-1, keepdim=True)


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs())
def test_attend_is_sdpa_with_the_log_normaliser(inputs):
    q, k, v, keep, _ = inputs
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    _, log_z = written_out(q, k, keep)
    with torch.no_grad():
        fused, fused_log_z = attend(q, k, v, keep, with_log_z=True)  # the kernel's own entry point
    assert torch.equal(fused, sdpa)  # the same kernel: the same bits
    explicit, explicit_log_z = attend(q, k, v, keep, with_log_z=True)  # gradient enabled: written out
    torch.testing.assert_close(explicit, sdpa, atol=1e-5, rtol=1e-5)
    assert torch.equal(attend(q, k, v, keep)[0], explicit)  # the output does not depend on the asking
    for got in (fused_log_z, explicit_log_z):
        assert got.dtype == torch.float32 and got.shape == (*q.shape[:3], 1)
        torch.testing.assert_close(got.double(), log_z, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_under_bf16_autocast_the_fused_path_keeps_sdpas_bits():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 7, 8, generator=g) for _ in range(3))
    keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    keep[1, ..., 4:] = False
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = attend(q, k, v, keep)
        assert torch.equal(got, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))


@settings(max_examples=20, deadline=None)
@given(inputs=attention_inputs(), dropout_p=st.sampled_from([0.0, 0.3]))
def test_the_written_out_backward_is_autograds(inputs, dropout_p):
    """The hand-written backward (WrittenOut) against autograd through the same attention, with
    the same dropout mask (the same seed), the output's and log Z_T's gradients together."""
    q, k, v, keep, _ = inputs
    weights = torch.randn(q.shape)
    grads = []
    for reference in (False, True):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        torch.manual_seed(0)
        if reference:
            scores, log_z = written_out(leaves[0].float(), leaves[1].float(), keep)
            probs = torch.softmax(scores.float(), -1)
            out = (dropout(probs, dropout_p) if dropout_p else probs) @ leaves[2]
            log_z = log_z.float()
        else:
            out, log_z = attend(*leaves, keep, dropout_p, with_log_z=True)
        ((out * weights).sum() + log_z.sum()).backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), p=st.sampled_from([0.1, 0.5, 0.9]),
       seed=st.integers(0, 2**31 - 1))
def test_dropout_zeroes_with_probability_p_and_scales_the_rest(shape, p, seed):
    torch.manual_seed(seed)
    x = torch.rand(shape) + 0.5
    got = dropout(x, p)
    kept = got != 0
    assert got.shape == x.shape
    torch.testing.assert_close(got[kept], x[kept] / (1 - p), rtol=1e-4, atol=0)  # p rounded to 2^-16
    many = dropout(torch.ones(50_000), p)  # the rate: within 5 sigma of p, the mean within 5 sigma of 1
    sigma = math.sqrt(p * (1 - p) / many.numel())
    assert abs((many == 0).float().mean().item() - p) < 5 * sigma
    assert abs(many.mean().item() - 1) < 5 * sigma / (1 - p)
    with pytest.raises(ValueError, match="must be in"):
        dropout(x, 1.0)


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs(), layer_layout=st.booleans())
def test_attend_prefix_is_softmax_attention_over_the_prefix_with_its_log_normaliser(inputs, layer_layout):
    """The (h, L, B T) layout gives Attn(q, P_K, P_V) and log Z_P as the textbook formulas do, for q
    contiguous or, as in the layer, a (B, h, T, d) view of (B, T, h, d); gradients included."""
    q, _, _, _, (p_k, p_v) = inputs
    if layer_layout:
        q = q.transpose(1, 2).contiguous().transpose(1, 2)  # the same values, the layer's strides
    q = q.detach().requires_grad_()
    scores = (q.double() @ p_k.double().transpose(-1, -2)) / math.sqrt(q.size(-1))  # (B, h, T, L)
    want_log_z = torch.logsumexp(scores, dim=-1, keepdim=True)
    want = torch.softmax(scores, dim=-1) @ p_v.double()
    out, log_z = attend_prefix(q, p_k, p_v, 0.0)
    assert out.shape == q.shape and log_z.shape == (*q.shape[:3], 1) and log_z.dtype == torch.float32
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_z.double(), want_log_z, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad((out.sum() + log_z.sum()), q)
    (want_grad,) = torch.autograd.grad(want.sum() + want_log_z.sum(), q)
    torch.testing.assert_close(grad, want_grad, atol=1e-4, rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs())
def test_mass_shares_are_the_prefix_and_token_shares_of_the_attention_mass(inputs):
    q, k, _, keep, prefix_kv = inputs
    _, log_z_tokens = written_out(q, k, keep)
    log_z_prefix = torch.logsumexp((q.double() @ prefix_kv[0].double().transpose(-1, -2)) / math.sqrt(q.size(-1)),
                                   dim=-1, keepdim=True)
    rho = torch.sigmoid(log_z_prefix - log_z_tokens)  # Z_P / (Z_P + Z_T)
    got_rho, got_tau = mass_shares(q, k, prefix_kv[0], keep)
    torch.testing.assert_close(got_rho.double(), rho, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_tau.double(), 1 - rho, atol=1e-5, rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs(), gate=st.floats(0, 1))
def test_every_way_to_lam_gives_the_same_mixture_and_gate_zero_gives_the_tokens_bits(inputs, gate):
    """No gradient (the kernel's log Z_T), gradient (written out), and the CUDA way (no log Z_T:
    mass_shares) give the same mixture; at G = 0 each gives its own token attention exactly."""
    q, k, v, keep, prefix_kv = inputs
    g = torch.full((q.size(0), 1, 1, 1), gate)
    with torch.no_grad():
        fused = mix_in_prefix(q, k, v, keep, *prefix_kv, g, 0.0)
    q_g = q.clone().requires_grad_(), g.clone().requires_grad_()  # gradients by the written-out way and the CUDA way
    explicit = mix_in_prefix(q_g[0], k, v, keep, *prefix_kv, q_g[1], 0.0)
    explicit_grads = torch.autograd.grad(explicit.sum(), q_g)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(minipelt.model.prefix, "attend",
                  lambda q, k, v, mask, p, with_log_z: (F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None))
        shares = mix_in_prefix(q_g[0], k, v, keep, *prefix_kv, q_g[1], 0.0)
        shares_grads = torch.autograd.grad(shares.sum(), q_g)  # SDPA's backward reads its output: no in-place on it
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shares, fused, atol=1e-5, rtol=1e-5)
    for got, want in zip(shares_grads, explicit_grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    if gate == 0:
        sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        assert torch.equal(fused, sdpa) and torch.equal(shares, sdpa)
        assert torch.equal(explicit, attend(q, k, v, keep)[0])

