"""Every built-in adapter method, registered, and the one table of method x family pairs that cannot work."""

from speechpeft.adapters import adalora as _adalora  # noqa: F401
from speechpeft.adapters import baselines as _baselines  # noqa: F401
from speechpeft.adapters import bottleneck as _bottleneck  # noqa: F401
from speechpeft.adapters import lora as _lora  # noqa: F401
from speechpeft.adapters import prefix as _prefix  # noqa: F401
from speechpeft.adapters.base import METHODS, AdapterMethod, AdapterOptions
from speechpeft.errors import InputError

# (method, backbone family) -> why it cannot work. `check_supported` raises with the reason.
UNSUPPORTED = {
    ("prefix", "wavlm"): "WavLM's attention hands its projection weights straight to "
    "F.multi_head_attention_forward, so neither a projection hook nor transformers' attention interface can "
    "add prefix keys; use lora or bottleneck on WavLM",
}


class UnsupportedCombinationError(InputError):
    """A method that cannot work on a backbone family (see `UNSUPPORTED`)."""


def check_supported(method: str, family: str) -> None:
    reason = UNSUPPORTED.get((method, family))
    if reason is not None:
        raise UnsupportedCombinationError(f"--method {method} does not work on {family} backbones: {reason}")


__all__ = ["METHODS", "UNSUPPORTED", "AdapterMethod", "AdapterOptions", "check_supported"]
