"""Training state that survives a crash: model, optimizer, step and RNG, all in safetensors + JSON.

Nothing is pickled: optimizer moments are flattened into named tensors, and the structure (param
groups, step, options) goes to JSON. A checkpoint is written to a temporary directory and renamed
into place (`speechpeft.directories`), so a crash mid-save leaves the previous checkpoint, or one that
`recover_directory` puts back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from speechpeft.directories import replace_directory, staging_directory

STATE_FILE, META_FILE = "state.safetensors", "state.json"


def save_state(directory: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
               step: int, meta: dict) -> None:  # fmt: skip
    tensors = {f"{name}.{key}": value.detach().to("cpu").clone().contiguous()
               for name, module in modules.items() for key, value in module.state_dict().items()}  # fmt: skip
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        tensors.update({f"optimizer.{index}.{key}": torch.as_tensor(value).clone() for key, value in slots.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = staging_directory(directory)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / STATE_FILE))
    (tmp / META_FILE).write_text(json.dumps({"step": step, "param_groups": optim["param_groups"], **meta}, indent=1))
    replace_directory(tmp, directory)


def load_state(directory: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict:
    """Restore everything `save_state` wrote; returns the JSON metadata (with "step")."""
    tensors = load_file(str(directory / STATE_FILE))
    meta = json.loads((directory / META_FILE).read_text())
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return meta
