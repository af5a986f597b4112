"""The prefix's share of the attention mass (minipelt/training/prefix_share.py), against the textbook:
the softmax over [P_K; K] written out, its probabilities on the prefix slots summed; with UniPELT's
gate, lam = G Z_P / (G Z_P + Z_T) from the exponentiated scores. An evaluation (predict) measures the
same share batch by batch as one call on the whole split."""
import pytest
import torch
from conftest import TINY

import bench.grid.prefix_share as bench_prefix_share
from minipelt.data.fewshot import EncodedSplit
from minipelt.model.bert import BertModel
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.methods import PeltConfig
from minipelt.training.evaluation import predict
from minipelt.training.prefix_share import layer_inputs, prefix_shares


def batch(B=4, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T - 4:] = 0
    mask[3, T - 2:] = 0
    return ids, mask


def textbook_shares(bert: BertModel, ids, mask) -> list[float]:
    """lam = G Z_P / (G Z_P + Z_T) per layer, from each layer's written-out scores over [P_K; K]."""
    with layer_inputs(bert) as inputs:
        bert(ids, mask)
    real = mask.bool()
    prefix_kv, shares = bert.prefix(), []
    for i, layer in enumerate(bert.encoder.layer):
        sa, x = layer.attention.self, inputs[i]
        q, k = layer.split_heads(sa.query(x, real)), layer.split_heads(sa.key(x))  # (B, h, T, d)
        p_k = prefix_kv[i][0]  # (h, L, d)
        scale = q.size(-1) ** -0.5
        z_prefix = torch.exp(q @ p_k.transpose(-1, -2) * scale).sum(-1)  # (B, h, T)
        z_tokens = (torch.exp(q @ k.transpose(-1, -2) * scale) * real[:, None, None, :]).sum(-1)
        g = layer.prefix_gate(x, real) if layer.prefix_gate is not None else 1.0  # (B, 1, 1)
        lam = g * z_prefix / (g * z_prefix + z_tokens)
        shares.append(lam[real[:, None, :].expand_as(lam)].mean().item())
    return shares


@pytest.mark.parametrize("method", ["prefix", "unipelt", "unipelt-ap"])
def test_prefix_shares_are_the_textbook_share_of_the_attention_mass(method):
    torch.manual_seed(0)
    bert = BertModel(TINY, PeltConfig.from_method(method)).eval()
    with torch.no_grad():
        bert.prefix.embedding.weight.mul_(20)  # a prefix far from uniform: shares differ by layer
    ids, mask = batch()
    got = prefix_shares(bert, ids, mask)
    with torch.no_grad():
        expected = textbook_shares(bert, ids, mask)
    assert len(got) == TINY.num_hidden_layers
    assert got == pytest.approx(expected, rel=1e-5)


def test_an_evaluation_measures_the_share_batch_by_batch_as_on_the_whole_split():
    torch.manual_seed(0)
    model = SequenceClassifier(BertModel(TINY, PeltConfig.from_method("unipelt")), num_labels=2).eval()
    ids, mask = batch(B=7, T=9, seed=1)
    rows = [row[: int(m.sum())].tolist() for row, m in zip(ids, mask)]
    split = EncodedSplit(rows, [[0] * len(r) for r in rows], [[1] * len(r) for r in rows], None)
    _, gates, shares = predict(model, split, batch_size=3, device=torch.device("cpu"), prefix_share=True)
    assert shares == pytest.approx(prefix_shares(model.bert, ids, mask), abs=2e-6)
    assert len(gates) == 4 * TINY.num_hidden_layers  # the gates are still read, not the recomputed ones lost

    lora = SequenceClassifier(BertModel(TINY, PeltConfig.from_method("lora")), num_labels=2).eval()
    assert predict(lora, split, batch_size=3, device=torch.device("cpu"), prefix_share=True)[2] is None  # no prefix
    assert predict(model, split, batch_size=3, device=torch.device("cpu"))[2] is None  # not asked for


def test_the_bench_uses_the_library_function():
    assert bench_prefix_share.prefix_shares is prefix_shares
