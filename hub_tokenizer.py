"""Saving a tokenizer the way the Hub needs it: loadable by transformers 4.57 and 5.x, nothing machine-local."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import PreTrainedTokenizerBase

# Keys transformers 5.x writes into tokenizer_config.json that describe the machine it was saved on.
MACHINE_LOCAL_TOKENIZER_KEYS = ("is_local", "local_files_only", "name_or_path", "_commit_hash", "cache_dir")


def save_tokenizer_for_hub(tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike, max_length: int) -> None:
    """Without this, 5.x records `is_local`/`local_files_only` and an unbounded `model_max_length` (so `pipeline`
    never truncates), and names the generic `TokenizersBackend` class, which 4.57 can't load: the slow class name
    (`BertTokenizerFast` → `BertTokenizer`) is what both versions map to a fast tokenizer."""
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(folder)
    config_path = Path(folder, "tokenizer_config.json")
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in MACHINE_LOCAL_TOKENIZER_KEYS:
        tokenizer_config.pop(key, None)
    tokenizer_config["tokenizer_class"] = type(tokenizer).__name__.removesuffix("Fast")
    config_path.write_text(json.dumps(tokenizer_config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
