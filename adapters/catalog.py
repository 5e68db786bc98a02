"""Every built-in adapter method, registered: import `METHODS` from here."""

from speechpeft.adapters import adalora as _adalora  # noqa: F401
from speechpeft.adapters import baselines as _baselines  # noqa: F401
from speechpeft.adapters import lora as _lora  # noqa: F401
from speechpeft.adapters.base import METHODS, AdapterMethod, AdapterOptions

__all__ = ["METHODS", "AdapterMethod", "AdapterOptions"]
