"""Fetching a rule file's default checkpoint through huggingface_hub's cache.

Only used when ``remap apply`` gets no SOURCE. With the file already cached
(or ``HF_HUB_OFFLINE=1``) nothing touches the network.
"""

from __future__ import annotations

from pathlib import Path

from .errors import FetchError
from .rules import RuleSet


def fetch_default(ruleset: RuleSet) -> Path:
    """Download (or find in the cache) the checkpoint named in ``source.fetch``."""
    spec = ruleset.source
    if not spec.fetch_repo or not spec.fetch_file:
        raise FetchError("this rule file names no default checkpoint (source.fetch); pass SOURCE",
                         ruleset.path)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    name = f"{spec.fetch_repo}/{spec.fetch_file}"
    try:
        return Path(hf_hub_download(repo_id=spec.fetch_repo, filename=spec.fetch_file))
    except LocalEntryNotFoundError:
        raise FetchError(f"cannot fetch {name}: no network and not in the Hugging Face cache; "
                         "download it elsewhere and pass it as SOURCE") from None
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FetchError(f"cannot fetch {name}: {first}") from None
    except OSError as exc:
        raise FetchError(f"cannot fetch {name}: {exc}") from None
