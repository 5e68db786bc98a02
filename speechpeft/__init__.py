"""speechpeft: one frozen speech-language backbone, many small task adapters."""

__version__ = "0.1.0"
