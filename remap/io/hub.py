"""Fetching a rule file's default checkpoint through huggingface_hub's cache.

Only used when ``remap apply`` gets no SOURCE. A cached file is used without
touching the network; with no network at all, the user gets one line at once
instead of huggingface_hub's retry loop.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..diagnostics import first_line
from ..errors import FetchError
from ..rules.model import SourceSpec


def fetch_default(spec: SourceSpec, where: str) -> Path:
    """Find in the cache, or download, the checkpoint named in ``source.fetch`` (``where``: the rule file)."""
    if not spec.fetch_repo or not spec.fetch_file:
        raise FetchError("this rule file names no default checkpoint (source.fetch); pass SOURCE", where)
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    name = f"{spec.fetch_repo}/{spec.fetch_file}"
    cached = try_to_load_from_cache(spec.fetch_repo, spec.fetch_file)
    if isinstance(cached, str):
        return Path(cached)
    offline = (f"cannot fetch {name}: no network and not in the Hugging Face cache; "
               "download it elsewhere and pass it as SOURCE")
    if constants.HF_HUB_OFFLINE or not _reachable(constants.ENDPOINT):
        raise FetchError(offline)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # no retry chatter: the outcome is one line
    try:
        return Path(hf_hub_download(repo_id=spec.fetch_repo, filename=spec.fetch_file))
    except LocalEntryNotFoundError:
        raise FetchError(offline) from None
    except HfHubHTTPError as exc:
        raise FetchError(f"cannot fetch {name}: {first_line(exc)}") from None
    except OSError as exc:
        raise FetchError(f"cannot fetch {name}: {exc}") from None


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Can the hub's host be resolved and connected to? (A cheap check before a retrying download.)"""
    host = urlparse(endpoint).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
