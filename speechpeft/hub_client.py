"""The Hugging Face Hub client every publish and pull goes through: one place that finds the token and endpoint.

The token comes, in order, from the argument, `HF_TOKEN`, then the file `hf auth login` writes
(huggingface_hub's own lookup). It is handed to `HfApi` and never printed or logged: errors that could echo it
are rewritten by `scrub`.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from speechpeft.errors import InputError

if TYPE_CHECKING:
    from huggingface_hub import HfApi

HUB_PREFIX = "hf://"  # marks a name as a Hub repo id where a local name could also be meant
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENDPOINT_HELP = "Hub address (default: $HF_ENDPOINT, else https://huggingface.co)"
TOKEN_HELP = "Hub token with {access} access (default: $HF_TOKEN, else the one `hf auth login` saved); never printed"


def resolve_token(token: str | None) -> str | None:
    """The token to use: `token`, else huggingface_hub's lookup (HF_TOKEN, then the saved login); None if none."""
    from huggingface_hub import get_token

    return token or get_token()


def hub_api(token: str | None = None, endpoint: str | None = None, write: bool = False) -> HfApi:
    """An `HfApi` on `endpoint` (None: `HF_ENDPOINT` or the public Hub) with the resolved token.

    Raises InputError when `write` and no token is found, naming where tokens are looked for.
    """
    from huggingface_hub import HfApi

    resolved = resolve_token(token)
    if write and not resolved:
        raise InputError(
            "no Hub token: pass --token, set HF_TOKEN, or run `hf auth login` (a token with write access)"
        )
    return HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=resolved)


def scrub(message: str, token: str | None) -> str:
    """`message` with the token (if any) replaced, for errors and logs."""
    resolved = resolve_token(token)
    return message.replace(resolved, "hf_***") if resolved else message


def looks_like_repo_id(name: str) -> bool:
    """Whether `name` reads as a Hub repo id, `owner/name` (not a local path that exists)."""
    return bool(_REPO_ID.match(name)) and not os.path.exists(name)
