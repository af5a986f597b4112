"""minipelt: UniPELT (Mao et al., ACL 2022) from scratch in plain PyTorch."""
from minipelt.bert import BertConfig, BertModel, BertOutput
from minipelt.classifier import SequenceClassifier
from minipelt.gate import forced_gates
from minipelt.methods import PeltConfig, is_trainable, mark_trainable, trainable_state_dict
from minipelt.tokenizer import Tokenizer

__all__ = ["BertConfig", "BertModel", "BertOutput", "SequenceClassifier", "forced_gates", "PeltConfig",
           "is_trainable", "mark_trainable", "trainable_state_dict", "Tokenizer"]
