"""BERT plus a task head: logits = W_c dropout(pool(h)) + b_c.

Pooling (the head's input):
- "cls":  BERT's pooler, tanh(W_p h_[CLS] + b_p) (the paper's choice). Pretrained with
          next-sentence prediction and frozen under PELT.
- "mean": the mean of the last hidden states over real tokens. For checkpoints whose pooler
          was never trained, e.g. all-MiniLM-L6-v2 (trained with mean pooling): through its
          random frozen pooler a PELT method gets almost no gradient.
Regression (STS-B) is a head with one output.
"""
import torch
import torch.nn as nn

from minipelt.model.bert import BertModel

POOLINGS = ("cls", "mean")


class SequenceClassifier(nn.Module):
    def __init__(self, bert: BertModel, num_labels: int, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.bert, self.num_labels, self.pooling = bert, num_labels, pooling
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob)
        self.classifier = nn.Linear(bert.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """-> logits (B, num_labels); (B,) for regression."""
        out = self.bert(input_ids, attention_mask, token_type_ids)
        if self.pooling == "cls":
            pooled = out.pooler_output  # (B, H)
        else:
            mask = (torch.ones_like(input_ids) if attention_mask is None else attention_mask)[..., None]
            mask = mask.to(out.last_hidden_state.dtype)  # (B, T, 1)
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        return logits.squeeze(-1) if self.num_labels == 1 else logits
