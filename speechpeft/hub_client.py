"""The Hugging Face Hub client every publish and pull goes through: one place that finds the token and endpoint.

The token comes, in order, from the argument, `HF_TOKEN`, then the file `hf auth login` writes
(huggingface_hub's own lookup). It is handed to `HfApi` and never printed or logged: errors that could echo it
are rewritten by `scrub`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from speechpeft.errors import InputError, UserError

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


REFUSED = {  # HTTP status of a refusal the user can fix: what to do
    401: "the token was not accepted: pass a valid one with --token or HF_TOKEN, or run `hf auth login`",
    403: "the token may not write there: use a token with write access to the repo's owner",
    404: "check the repo id, OWNER/NAME (a private repo needs a token that may read it)",
}


@contextmanager
def hub_errors(token: str | None, what: str, endpoint: str) -> Iterator[None]:
    """Turn the Hub client's errors about `what` (e.g. "the model repo alice/x") into one-line InputError (the
    user can fix it) or UserError (the Hub is unreachable or failing), naming the fix, the token scrubbed.

    The original error is not chained: a server could echo the request, token included.
    """
    from huggingface_hub import errors

    try:
        yield
    except errors.RevisionNotFoundError as error:
        raise InputError(scrub(f"{what} has no such revision at {endpoint} ({_first_line(error)}): give a branch, "
                               "tag or commit it has", token)) from None  # fmt: skip
    except errors.RepositoryNotFoundError:
        raise InputError(scrub(f"{what} is not on the Hub at {endpoint}, or the token may not read it: "
                               + REFUSED[404], token)) from None  # fmt: skip
    except errors.HfHubHTTPError as error:
        status = error.response.status_code
        message = f"the Hub at {endpoint} answered HTTP {status} for {what}: {_first_line(error)}"
        raise (InputError if status in REFUSED else UserError)(
            scrub(f"{message}; {REFUSED.get(status, 'try again later')}", token)
        ) from None
    except (errors.OfflineModeIsEnabled, errors.HTTPError) as error:  # HTTPError: the HTTP library's, on connecting
        message = (f"cannot reach the Hub at {endpoint}: {_first_line(error)}; check --endpoint or HF_ENDPOINT, "
                   "the network, and that HF_HUB_OFFLINE is unset")  # fmt: skip
        raise UserError(scrub(message, token)) from None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_repo_id(value: str) -> str:
    """`value` if it is a Hub repo id, OWNER/NAME; else InputError saying why (huggingface_hub's rules)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError as error:
        reason = _first_line(error).split(". Use `repo_type`")[0]
        raise InputError(f"{value!r} is not a Hub repo id: {reason}") from None
    if "/" not in value:
        raise InputError(f"{value!r}: give the repo id as OWNER/NAME (your user or organisation name first)")
    return value


@contextmanager
def quiet_progress() -> Iterator[None]:
    """huggingface_hub's progress bars only on a terminal (a log or a pipe gets none)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if sys.stderr.isatty() or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()
