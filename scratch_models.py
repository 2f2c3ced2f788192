"""Small encoders and tokenizers built here from scratch: what the quickstart, the tests and the benchmarks train,
since no pretrained backbone can be downloaded offline. Their token ids match the real backbone's."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

# The special tokens in the order of KLUE's vocabularies (and so jhgan/ko-sroberta-multitask's), ids 0-4.
KLUE_SPECIAL_TOKENS = ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]")


def train_wordpiece_tokenizer(sentences: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerBase:
    """A BERT WordPiece tokenizer with the real backbone's special-token ids; cased and without accent stripping,
    as KLUE's: lower-casing would NFD-decompose Hangul into jamo."""
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(KLUE_SPECIAL_TOKENS))
    backend.train_from_iterator(sentences, trainer)
    vocabulary = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocabulary), encoding="utf-8")
        tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": False, "strip_accents": False}
        Path(folder, "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
        return AutoTokenizer.from_pretrained(folder)


def tiny_encoder_config(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, max_length: int = 256) -> dict:
    """A small RoBERTa that trains from scratch on a CPU in minutes, with the real backbone's token ids."""
    return {
        "model_type": "roberta",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 32),
        "intermediate_size": hidden_size * 4,
        "max_position_embeddings": max_length + 2,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
