"""Where a model is: a local folder, checked, or a Hub id — one rule for every backend and engine, without torch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import KoSentTypeError, one_line


def locate_model(model: str | os.PathLike) -> str:
    """The model's path or Hub id; a missing or non-model folder, or a missing name that looks like a path rather
    than a repo id (absolute, ./, ../, ~, a backslash, more than one /), is refused in one line."""
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise KoSentTypeError(f"cannot load model {text}: it is a file; give the folder that holds config.json")
        if not (path / "config.json").is_file():
            raise KoSentTypeError(f"cannot load model {text}: not a model folder (it has no config.json)")
        return str(path)
    if isinstance(model, os.PathLike) or looks_like_path(text):
        raise KoSentTypeError(f"model folder not found: {text}")
    return text


def looks_like_path(text: str) -> bool:
    """A name that can't be a Hub id (`name`, `owner/name`): absolute, ./, ../, ~, a backslash, more than one /."""
    return os.path.isabs(text) or text.startswith(("~", ".")) or "\\" in text or text.count("/") > 1


def local_folder(model: str | os.PathLike) -> Path | str:
    """The model's folder as a Path when it is local, else its Hub id."""
    location = locate_model(model)
    return Path(location) if Path(location).is_dir() else location


def read_model_config(model: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """The model's config.json as a dict, from its folder or the Hub, with one-line errors."""
    location = local_folder(model)
    if isinstance(location, Path):
        config_path = location / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            config_path = Path(hf_hub_download(location, "config.json", revision=revision))
        except Exception as error:  # the Hub client raises many types for "not there" and "offline"
            raise KoSentTypeError(f"cannot load model {model}: {type(error).__name__}: {one_line(error)}") from error
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise KoSentTypeError(
            f"cannot load model {model}: its config.json is unreadable ({one_line(error)})"
        ) from error
    if not isinstance(config, dict):
        raise KoSentTypeError(f"cannot load model {model}: its config.json is not a JSON object")
    return config
