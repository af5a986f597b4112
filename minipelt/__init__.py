"""minipelt: UniPELT (Mao et al., ACL 2022) from scratch in plain PyTorch."""
from minipelt.model.bert import BertConfig, BertModel, BertOutput
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.gate import forced_gates
from minipelt.model.methods import PeltConfig, is_trainable, mark_trainable, trainable_state_dict
from minipelt.data.tokenizer import Tokenizer

__all__ = ["BertConfig", "BertModel", "BertOutput", "SequenceClassifier", "forced_gates", "PeltConfig",
           "is_trainable", "mark_trainable", "trainable_state_dict", "Tokenizer"]
