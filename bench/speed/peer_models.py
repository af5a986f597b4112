"""The models a bench.speed.peers cell trains: each peer library's BertForSequenceClassification with one method.

transformers for fine-tuning and BitFit, peft for LoRA and prefix-tuning, adapters for the bottleneck
adapter, prefix-tuning and UniPELT; the configs are listed in bench/speed/peers.py's docstring. Each model is
wrapped to be called like minipelt's, and comes with the peer's own merge into a deployable form where
the library offers one. The peer libraries are imported only here and only when a peer cell runs.
"""
import torch
import torch.nn as nn

from bench.speed.speed import BERT_BASE_CONFIG, NUM_LABELS, ROOT

MODELS = {"minilm": ROOT / "weights" / "minilm", "bert-base": BERT_BASE_CONFIG}
PEERS = {  # method -> the peer libraries that implement it, in table order
    "finetune": ("transformers",),
    "bitfit": ("transformers",),
    "adapter": ("adapters",),
    "prefix": ("adapters", "peft"),
    "lora": ("peft",),
    "unipelt": ("adapters",),
}
METHODS = tuple(PEERS)
ADAPTER_NAME = "peer"  # the name of the adapters-library module added to the model


class Logits(nn.Module):
    """A Hugging Face classifier called like minipelt's: model(input_ids, attention_mask, token_type_ids)."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def hf_classifier(model: str) -> nn.Module:
    """BertForSequenceClassification: MiniLM's weights, or random init in bert-base's shape."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if model == "bert-base":
        config = BertConfig.from_json_file(MODELS[model])
        config.num_labels = NUM_LABELS
        return BertForSequenceClassification(config)
    return BertForSequenceClassification.from_pretrained(MODELS[model], num_labels=NUM_LABELS, dtype=torch.float32)


def adapters_config(method: str):
    import adapters

    return {
        "adapter": lambda: adapters.SeqBnConfig(reduction_factor=16, non_linearity="relu"),
        "prefix": lambda: adapters.PrefixTuningConfig(prefix_length=10, bottleneck_size=512, flat=False),
        "unipelt": lambda: adapters.UniPELTConfig(),
    }[method]()


def peft_config(method: str):
    import peft

    if method == "lora":
        return peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"],
                               lora_dropout=0.0)
    return peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=10, prefix_projection=True,
                                   encoder_hidden_size=512)


def build_peer(model: str, library: str, method: str) -> tuple[Logits, object]:
    """The peer's model with `method` added and only its parameters and the classifier trainable,
    and merge(model) -> what it did, turning the model into its deployable form (None: no such form)."""
    hf = hf_classifier(model)
    if library == "transformers":
        for name, p in hf.named_parameters():
            p.requires_grad_(method == "finetune" or name.endswith(".bias") or name.startswith("classifier."))
        return Logits(hf), None
    if library == "peft":
        import peft

        wrapped = Logits(peft.get_peft_model(hf, peft_config(method)))  # SEQ_CLS: the classifier trains too
        if method != "lora":
            return wrapped, None

        def merge_lora(m: Logits) -> str:
            m.hf = m.hf.merge_and_unload()
            return "LoRA merged (merge_and_unload)"
        return wrapped, merge_lora
    if library == "adapters":
        import adapters

        adapters.init(hf)
        hf.add_adapter(ADAPTER_NAME, config=adapters_config(method))
        hf.train_adapter(ADAPTER_NAME)  # freezes the base model, activates the adapter
        for p in hf.classifier.parameters():
            p.requires_grad_(True)
        if method == "adapter":
            return Logits(hf), None

        def eject_prefix(m: Logits) -> str:
            m.hf.eject_prefix_tuning(ADAPTER_NAME)
            return "prefix ejected (flat)"  # UniPELT's LoRA is gated: adapters cannot merge it
        return Logits(hf), eject_prefix
    raise ValueError(f"unknown peer library {library!r}")

