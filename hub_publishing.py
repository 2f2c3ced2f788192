"""Publishing a finished model folder on the Hub, the same way for every command that offers --push_to_hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

from .errors import KoSentTypeError, one_line


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    commit_message: str,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Create the repository if needed and upload `folder` as one commit; the repository's URL. The folder is
    already complete on disk, so a failure says so in one line rather than losing it."""
    api = HfApi()
    try:
        repo_url = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_url.repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            token=token,
            revision=revision,
        )
    except Exception as error:  # the Hub client raises many types (HTTP errors are OSErrors, bad ids ValueErrors)
        raise KoSentTypeError(
            f"{folder} was written, but pushing it to {repo_id} failed: {one_line(error, 300)}; upload it later"
        ) from None
    return repo_url
