"""minipelt: UniPELT (Mao et al., ACL 2022) from scratch in plain PyTorch.

    minipelt/model/     what you read: BERT and the methods, as the papers write them
    minipelt/kernels/   fast paths, each a drop-in for one textbook function (`textbook()` turns them off)
    minipelt/data/      GLUE, the few-shot protocol, the tokenizer, metrics
    minipelt/training/  the run: options, the loop, evaluation, run state and checkpoints
"""
from minipelt.data.tokenizer import Tokenizer
from minipelt.kernels import textbook
from minipelt.model.bert import BertConfig, BertModel, BertOutput
from minipelt.model.classifier import SequenceClassifier
from minipelt.model.gate import forced_gates
from minipelt.model.methods import PeltConfig, is_trainable, mark_trainable, trainable_state_dict

__all__ = ["BertConfig", "BertModel", "BertOutput", "SequenceClassifier", "forced_gates", "PeltConfig",
           "is_trainable", "mark_trainable", "trainable_state_dict", "Tokenizer", "textbook"]
