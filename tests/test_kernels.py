"""Every kernel (minipelt/kernels/) against the textbook function it replaces (minipelt/model/).

Values and gradients, padded batches (examples that are all padding included), dropout statistics,
fp32 and bf16 with stated tolerances, and bit-equality where it holds by construction: the fused
CPU attention gives F.scaled_dot_product_attention's bits, and at gate 0 every path gives its own
frozen attention exactly.
"""
import math
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import minipelt
from minipelt import kernels
from minipelt.kernels.attention import fused_cpu_entry
from minipelt.model.adapter import Adapter
from minipelt.model.attention import attend
from minipelt.model.lora import LoRALinear
from minipelt.model.prefix import attend_prefix, mix_in_prefix

FP32 = dict(atol=1e-5, rtol=1e-5)
FP32_GRAD = dict(atol=1e-4, rtol=1e-4)


@st.composite
def attention_inputs(draw, h=2, d=8):
    """q, k, v (B, h, T, d), a key mask with any padding (an example may be all padding), a prefix (2, h, L, d)."""
    B, T, L = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q, k, v = (2 * torch.randn(B, h, T, d, generator=g) for _ in range(3))
    lengths = torch.tensor(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    keep = (torch.arange(T)[None] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T)
    return q, k, v, keep, torch.randn(2, h, L, d, generator=g)


def both_paths(fn, *args, **kwargs):
    """fn's result with the kernels, then on the textbook path."""
    fast = fn(*args, **kwargs)
    with minipelt.textbook():
        return fast, fn(*args, **kwargs)


def weights_like(t: torch.Tensor) -> torch.Tensor:
    """Fixed random loss weights of t's shape: the same on every replay of a hypothesis example."""
    return torch.randn(t.shape, generator=torch.Generator().manual_seed(0))


def grads_of(fn, leaves, weights):
    """Gradients of sum(out * weights) + sum(finite log Z) with respect to `leaves`."""
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out, log_z = fn(*leaves)
    loss = (out * weights).sum() + (0 if log_z is None else log_z[torch.isfinite(log_z)].sum())
    return torch.autograd.grad(loss, leaves)


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs())
def test_attend_kernel_is_the_textbook_attention(inputs):
    """Inference (the fused kernel's entry point: SDPA's very bits) and training (the written-out
    forward and backward) against softmax(q k^T / sqrt(d) + mask) v and logsumexp."""
    q, k, v, keep, _ = inputs
    with torch.no_grad():
        (fused, fused_log_z), (want, want_log_z) = both_paths(attend, q, k, v, keep, with_log_z=True)
        if keep.any(-1).all():  # SDPA itself gives NaN for an example that is all padding
            assert torch.equal(fused, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
    (written, written_log_z), _ = both_paths(attend, q, k, v, keep, with_log_z=True)  # gradient enabled
    for out, log_z in ((fused, fused_log_z), (written, written_log_z)):
        torch.testing.assert_close(out, want, **FP32)
        assert log_z.dtype == torch.float32 and log_z.shape == (*q.shape[:3], 1)
        torch.testing.assert_close(log_z, want_log_z, **FP32)  # -inf where nothing is attended, on both
    assert torch.equal(attend(q, k, v, keep)[0], written)  # the output does not depend on the asking
    weights = weights_like(q)
    fast, textbook = both_paths(grads_of, lambda *t: attend(*t, keep, with_log_z=True), (q, k, v), weights)
    for got, want_grad in zip(fast, textbook):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want_grad, **FP32_GRAD)


def test_an_example_that_is_all_padding_attends_to_nothing_on_every_path():
    """Zero output, log Z = -inf and zero gradients for it, finite everything else; with a gated
    prefix it attends to the prefix alone (lam = 1), and at gate 0 to nothing, as the frozen layer."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g) for _ in range(3))
    p_k, p_v = torch.randn(2, 2, 3, 4, generator=g)
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    keep[1] = False
    for textbook in (False, True):
        with minipelt.textbook(textbook):
            for grad in (False, True):
                with torch.set_grad_enabled(grad):
                    out, log_z = attend(q, k, v, keep, with_log_z=True)
                    assert (out[1] == 0).all() and (log_z[1] == -math.inf).all() and torch.isfinite(out[0]).all()
                    prefix_only = attend_prefix(q, p_k, p_v, 0.0)[0]
                    mixed = mix_in_prefix(q, k, v, keep, p_k, p_v, torch.full((2, 1, 1, 1), 0.5), 0.0)
                    torch.testing.assert_close(mixed[1], prefix_only[1], **FP32)
                    frozen = mix_in_prefix(q, k, v, keep, p_k, p_v, torch.zeros(2, 1, 1, 1), 0.0)
                    assert torch.equal(frozen, out)
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            attend(*leaves, keep, 0.1, with_log_z=True)[0].sum().backward()
            for t in leaves:
                assert torch.isfinite(t.grad).all() and (t.grad[1] == 0).all()


def test_under_bf16_autocast_both_paths_agree_and_log_z_comes_from_the_softmaxs_scores():
    """bf16 rounds q, k, v, the scores and the probabilities (2^-8 relative): outputs agree to 3e-2
    (a few bf16 steps), and every path's log Z is within 1.5e-2 of the fp64 one (scores up to ~5 here,
    as in BERT). The training path reads s_j off the scores its softmax used (a second bf16 dot product
    was off by 0.066), so lam differs little between training and inference (docs/benchmarks.md)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 4, 64, 32, generator=g) for _ in range(3))
    keep = torch.ones(4, 1, 1, 64, dtype=torch.bool)
    keep[1, ..., 32:] = False
    scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(32)
    want_log_z = torch.logsumexp(scores.masked_fill(~keep, -math.inf), -1, keepdim=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            inference = attend(q, k, v, keep, with_log_z=True)
        training = attend(q, k, v, keep, with_log_z=True)
        with minipelt.textbook():
            textbook = attend(q, k, v, keep, with_log_z=True)
    for out, log_z in (inference, training, textbook):
        torch.testing.assert_close(out.float(), textbook[0].float(), atol=3e-2, rtol=0)
        assert (log_z.double() - want_log_z).abs().max() < 1.5e-2
    assert (training[1] - inference[1]).abs().max() < 1.5e-2


@settings(max_examples=20, deadline=None)
@given(inputs=attention_inputs(), dropout_p=st.sampled_from([0.1, 0.3]))
def test_the_written_out_backward_with_dropout_is_autograds(inputs, dropout_p):
    """WrittenOut's hand-written backward against autograd through the same computation with the
    same dropout16 mask (the same seed): what the kernel adds over the textbook is only the backward."""
    q, k, v, keep, _ = inputs
    keep = keep | ~keep.any(-1, keepdim=True)  # every example attends to something (the padding case: above)
    weights = weights_like(q)

    def autograd_attention(q, k, v):
        scores = (q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))).masked_fill(~keep, -math.inf)
        return kernels.dropout16(torch.softmax(scores, -1), dropout_p) @ v, torch.logsumexp(scores, -1, keepdim=True)

    torch.manual_seed(0)
    got = grads_of(lambda *t: attend(*t, keep, dropout_p, with_log_z=True), (q, k, v), weights)
    torch.manual_seed(0)
    want = grads_of(autograd_attention, (q, k, v), weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **FP32_GRAD)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), p=st.sampled_from([0.1, 0.5, 0.9]),
       seed=st.integers(0, 2**31 - 1))
def test_dropout16_zeroes_with_probability_p_and_scales_the_rest_as_f_dropout(shape, p, seed):
    torch.manual_seed(seed)
    x = torch.rand(shape) + 0.5
    got = kernels.dropout16(x, p)
    kept = got != 0
    assert got.shape == x.shape
    torch.testing.assert_close(got[kept], x[kept] / (1 - p), rtol=1e-4, atol=0)  # p rounded to 2^-16
    for drop in (kernels.dropout16, F.dropout):  # the same rate and mean: within 5 sigma of p and of 1
        many = drop(torch.ones(50_000), p)
        sigma = math.sqrt(p * (1 - p) / many.numel())
        assert abs((many == 0).float().mean().item() - p) < 5 * sigma
        assert abs(many.mean().item() - 1) < 5 * sigma / (1 - p)


@pytest.mark.parametrize("p", [-1e-6, 1.0, 1.5, math.nan])
def test_dropout16_refuses_a_probability_outside_0_1(p):
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        kernels.dropout16(torch.ones(4), p)


def test_dropout16_takes_any_p_below_1():
    torch.manual_seed(0)
    many = kernels.dropout16(torch.ones(200_000), 1 - 2**-20)  # rounded to 1 - 2^-16: almost all dropped
    assert (many != 0).float().mean().item() < 1e-4


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs(), layer_layout=st.booleans())
def test_attend_prefix_kernel_is_attention_over_the_prefix(inputs, layer_layout):
    """The (h, L, B T) layout against `attend` over the L prefix keys, for q contiguous or, as in the
    layer, a (B, h, T, d) view of (B, T, h, d); log Z_P and gradients included."""
    q, _, _, _, (p_k, p_v) = inputs
    if layer_layout:
        q = q.transpose(1, 2).contiguous().transpose(1, 2)  # the same values, the layer's strides
    (out, log_z), (want, want_log_z) = both_paths(attend_prefix, q, p_k, p_v, 0.0)
    assert out.shape == q.shape and log_z.shape == (*q.shape[:3], 1) and log_z.dtype == torch.float32
    torch.testing.assert_close(out, want, **FP32)
    torch.testing.assert_close(log_z, want_log_z, **FP32)
    fast, textbook = both_paths(grads_of, lambda q: attend_prefix(q, p_k, p_v, 0.0), (q,), weights_like(q))
    torch.testing.assert_close(fast[0], textbook[0], **FP32_GRAD)


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs())
def test_mass_shares_are_the_shares_of_the_textbook_log_normalisers(inputs):
    q, k, _, keep, (p_k, _) = inputs
    with minipelt.textbook():
        log_z_tokens = attend(q, k, k, keep, with_log_z=True)[1]
        log_z_prefix = attend_prefix(q, p_k, p_k, 0.0)[1]
    rho = torch.sigmoid(log_z_prefix - log_z_tokens)  # Z_P / (Z_P + Z_T)
    got_rho, got_tau = kernels.mass_shares(q, k, p_k, keep)
    torch.testing.assert_close(got_rho, rho, **FP32)
    torch.testing.assert_close(got_tau, 1 - rho, **FP32)


def cuda_way(q, k, v, mask, p, with_log_z):
    """The CUDA kernel's attention (fused SDPA, no log Z), run here on CPU."""
    has_key = mask.any(-1, keepdim=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_key) * has_key, None


# 0, or 1e-3 and above. g's gradient sums B h T d terms w (out_P - out_T) dlam/dg, and dlam/dg =
# Z_P / D - g Z_P^2 / D^2, D = g Z_P + Z_T (one of Z_P, Z_T is 1): two terms up to 1 / g that each path
# rounds apart, and at g = 0 as large as Z_P / Z_T (e^11 in an example hypothesis found), cancelling in
# the sum. So g's gradient is compared to 1e-3 + 1e-5 / g absolute and 1e-3 relative, and only on examples
# with a token: on one without, lam is 0 at g = 0 and 1 at every g > 0, no derivative to compare (the floor
# under D in prefix.py makes it 1e19 at 0). Real gates are means of sigmoids; no real example lacks a token.
GATES = st.just(0.0) | st.floats(1e-3, 1)


@settings(max_examples=30, deadline=None)
@given(inputs=attention_inputs(), gate=GATES)
def test_every_way_to_the_mixture_is_the_textbooks_and_gate_zero_gives_the_tokens_bits(inputs, gate):
    """Kernels without a gradient (fused log Z_T), with one (written out), the CUDA way (no log Z_T:
    mass_shares; SDPA's backward reads its output, so no in-place on it) and the textbook give the same
    mixture and gradients; at G = 0 each gives its own token attention exactly."""
    q, k, v, keep, (p_k, p_v) = inputs
    g = torch.full((q.size(0), 1, 1, 1), gate)
    mix = lambda q, g: (mix_in_prefix(q, k, v, keep, p_k, p_v, g, 0.0), None)  # noqa: E731
    weights = weights_like(q)
    with torch.no_grad():
        fused, tokens_fused = mix(q, g)[0], attend(q, k, v, keep)[0]
    (written, _), (textbook, _) = both_paths(mix, q, g)
    fast_grads, textbook_grads = both_paths(grads_of, mix, (q, g), weights)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(kernels, "attend", cuda_way)
        shares = mix(q, g)[0]
        shares_grads = grads_of(mix, (q, g), weights)
    for got in (fused, written, shares):
        torch.testing.assert_close(got, textbook, **FP32)
    (q_want, g_want), has_token = textbook_grads, keep.flatten(1).any(-1)  # has_token: (B,)
    for q_grad, g_grad in (fast_grads, shares_grads):
        torch.testing.assert_close(q_grad, q_want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(g_grad[has_token], g_want[has_token], atol=1e-3 + 1e-5 / max(gate, 1e-3), rtol=1e-3)
    if gate == 0:
        assert torch.equal(fused, tokens_fused) and torch.equal(written, attend(q, k, v, keep)[0])
        assert torch.equal(shares, cuda_way(q, k, v, keep, 0, 0)[0])
        with minipelt.textbook():
            assert torch.equal(textbook, attend(q, k, v, keep)[0])


@pytest.mark.parametrize("gated", [False, True])
def test_add_low_rank_is_lora_as_written_and_exact_at_gate_zero(gated):
    torch.manual_seed(0)
    lora = LoRALinear(16, 12, r=4, gated=gated)
    torch.nn.init.normal_(lora.lora_B)  # B = 0 at init would hide the delta
    x = torch.randn(3, 5, 16)
    mask = torch.ones(3, 5, dtype=torch.bool)
    (fast, textbook) = both_paths(lora, x, mask)
    torch.testing.assert_close(fast, textbook, **FP32)
    fast_grads, textbook_grads = both_paths(grads_of, lambda x: (lora(x, mask), None), (x,), torch.randn(3, 5, 12))
    torch.testing.assert_close(fast_grads[0], textbook_grads[0], **FP32_GRAD)
    if gated:
        lora.gate.forced = 0.0
        frozen = F.linear(x, lora.weight, lora.bias)
        for out in both_paths(lora, x, mask):
            assert torch.equal(out, frozen)


@pytest.mark.parametrize("gated", [False, True])
def test_add_scaled_linear_is_the_adapter_as_written_and_exact_at_gate_zero(gated):
    torch.manual_seed(0)
    adapter = Adapter(16, reduction_factor=4, gated=gated)
    x_a, residual = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4], dtype=torch.bool)
    fast, textbook = both_paths(adapter, x_a, residual, mask)
    torch.testing.assert_close(fast, textbook, **FP32)
    parameters = list(adapter.parameters())  # the gate's and the up-projection's bias included
    weights = torch.randn(3, 5, 16)

    def grads():
        out = adapter(x_a.requires_grad_(), residual.requires_grad_(), mask)
        return torch.autograd.grad((out * weights).sum(), [x_a, residual, *parameters])
    for fast_grad, textbook_grad in zip(*both_paths(grads)):
        torch.testing.assert_close(fast_grad, textbook_grad, **FP32_GRAD)
    if gated:
        adapter.gate.forced = 0.0
        for out in both_paths(adapter, x_a, residual, mask):
            assert torch.equal(out, residual)


def test_add_scaled_linear_keeps_the_residual_streams_dtype_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    residual, x = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 4, generator=g)
    weight, bias, s = torch.randn(8, 4, generator=g), torch.randn(8, generator=g), torch.rand(2, 1, 1, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = kernels.add_scaled_linear(residual, x, weight, bias, s)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, residual + s * F.linear(x, weight, bias), **FP32)


def test_mix_is_the_mixture_and_exact_at_zero():
    g = torch.Generator().manual_seed(0)
    a, h = torch.randn(2, 2, 3, 4, generator=g), torch.randn(2, 2, 3, 4, generator=g)
    lam = torch.rand(2, 1, 1, 1, generator=g)
    torch.testing.assert_close(kernels.mix(a, h, lam), (1 - lam) * a + lam * h, **FP32)
    zero = torch.zeros_like(lam)
    assert torch.equal(kernels.mix(a, h, zero), a)


def test_without_the_private_fused_op_the_kernel_warns_and_falls_back():
    with pytest.warns(UserWarning, match="written out instead"):
        assert fused_cpu_entry(types.SimpleNamespace()) is None
    other = types.SimpleNamespace(default=types.SimpleNamespace(_schema=torch.ops.aten.softmax.int._schema))
    with pytest.warns(UserWarning):
        assert fused_cpu_entry(types.SimpleNamespace(_scaled_dot_product_flash_attention_for_cpu=other)) is None
    assert fused_cpu_entry() is not None  # this torch has it
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g) for _ in range(3))
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    with pytest.MonkeyPatch.context() as m, torch.no_grad():
        m.setattr("minipelt.kernels.attention.FUSED_CPU", None)
        fallback = attend(q, k, v, keep, with_log_z=True)
    with torch.no_grad():
        for got, want in zip(fallback, attend(q, k, v, keep, with_log_z=True)):
            torch.testing.assert_close(got, want, **FP32)
