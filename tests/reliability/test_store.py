"""The store under crashes, concurrency and hostile names: a save killed midway (a real process, SIGKILL) leaves
the previous version loadable and nothing half-written listed; saves of one name from many threads take turns;
names, links and leftovers never lead a store operation outside the adapter it means.

(A save killed between its two renames is tested in tests/test_adapter_dir.py and tests/test_directories.py.)
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechpeft.adapter_dir import RECORD, WEIGHTS_FILE, save_adapter
from speechpeft.adapters.base import save_trainable
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.errors import InputError
from speechpeft.evaluation import load_trained
from speechpeft.store import adapter_path, list_adapters, remove_adapter, resolve_adapter, show_adapter
from tests.crash import killed_at_second_rename

WHISPER = "speechpeft/tiny-whisper"
WAIT = 120  # seconds: the longest the killed process may take to reach its save (it imports torch and a model)

# Saves a real LoRA adapter on the tiny Whisper into TARGET, but its method's save writes the weights file half way
# (as a process killed while writing it would leave it), says so in READY and hangs, holding the store's lock.
HALF_WRITTEN_SAVE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from speechpeft.adapter_dir import save_adapter
    from speechpeft.adapters.base import AdapterOptions
    from speechpeft.adapters.catalog import METHODS
    from speechpeft.backbones import load_frozen

    target, ready = Path(sys.argv[1]), Path(sys.argv[2])
    lora = METHODS.get("lora")
    model = lora.attach(load_frozen("speechpeft/tiny-whisper", "asr", "fp32", device="cpu"), AdapterOptions())

    def save_half_and_hang(model, directory):
        lora.save(model, directory)
        weights = directory / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        ready.touch()
        time.sleep(600)

    save_adapter(model, target, {"task": "asr", "method": "lora", "backbone": "speechpeft/tiny-whisper"},
                 save_half_and_hang)
""")


def killed_while_saving(target: Path, ready: Path) -> None:
    """Run HALF_WRITTEN_SAVE in a fresh interpreter and SIGKILL it once its weights are half written."""
    process = subprocess.Popen([sys.executable, "-c", HALF_WRITTEN_SAVE, str(target), str(ready)])
    try:
        deadline = time.monotonic() + WAIT
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"the save never reached its weights (rc {process.poll()})"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


def within(seconds: float, work: Callable[[], object]) -> None:
    """Run `work` in a thread and re-raise what it raised; fail (rather than hang) when it takes over `seconds`."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s (a lock left held?)"
    if outcome[0] is not None:
        raise outcome[0]


@pytest.mark.slow
def test_a_save_killed_midway_leaves_the_previous_version_and_lists_nothing_half_written(tmp_path):
    store, name = tmp_path / "store", "asr/lora"
    target = adapter_path(name, store)
    backbone = load_frozen(WHISPER, "asr", "fp32", device="cpu")
    save_random_adapters(backbone, "lora", [target], task="asr", seed=1, backbone_name=WHISPER)
    before = (target / WEIGHTS_FILE).read_bytes()

    killed_while_saving(target, tmp_path / "ready")

    assert (target.parent / "lora.tmp" / WEIGHTS_FILE).exists()  # the half-written next version is still there,
    assert [a["name"] for a in list_adapters(store)] == [name]  # but only the previous version is listed,
    assert (target / WEIGHTS_FILE).read_bytes() == before  # whole, and it loads
    _, model, record = load_trained(resolve_adapter(name, store), device="cpu")
    assert record["random_init"]["seed"] == 1 and not model.training

    backbone = load_frozen(WHISPER, "asr", "fp32", device="cpu")  # the next save goes through: the lock went with
    within(WAIT, lambda: save_random_adapters(backbone, "lora", [target], task="asr", seed=2, backbone_name=WHISPER))
    assert sorted(p.name for p in target.parent.iterdir()) == ["lora"]  # the killed process (and its leftovers)
    assert json.loads((target / RECORD).read_text())["random_init"]["seed"] == 2


def test_a_save_killed_between_its_renames_is_listed_under_its_own_name(tmp_path):
    target = tmp_path / "kws" / "frozen"
    save_adapter(None, target, {"task": "kws", "method": "frozen", "backbone": WHISPER, "version": 1}, _record_only)
    killed_at_second_rename(f"""
        from pathlib import Path
        from speechpeft.adapter_dir import save_adapter
        save_adapter(None, Path({str(target)!r}), {{"task": "kws", "version": 2}}, lambda model, d: d.mkdir())
    """)
    assert not target.exists() and (tmp_path / "kws" / "frozen.old").is_dir()

    assert [(a["name"], a["method"]) for a in list_adapters(tmp_path)] == [("kws/frozen", "frozen")]
    assert show_adapter("kws/frozen", tmp_path)["version"] == 1


def _record_only(model, directory: Path) -> None:
    directory.mkdir()


class Counter(torch.nn.Module):
    """A one-tensor model whose weight holds its writer's number, to tell whose files ended up together."""

    def __init__(self, writer: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((64, 64), float(writer)))


def test_concurrent_saves_of_one_name_take_turns(tmp_path):
    """Eight threads save one name at once; each save's files are written while no other save's are, and the
    adapter left is one writer's weights with the same writer's record."""
    target, spans, lock = tmp_path / "asr" / "shared", [], threading.Lock()

    def slow_save(model: Counter, directory: Path) -> None:
        start = time.monotonic()
        save_trainable(model, directory, "frozen")
        time.sleep(0.05)  # a window for another writer to step on these files, were it let in
        with lock:
            spans.append((start, time.monotonic()))

    def save(writer: int) -> None:
        save_adapter(Counter(writer), target, {"task": "asr", "method": "frozen", "writer": writer}, slow_save)

    with ThreadPoolExecutor(8) as pool:
        for saved in [pool.submit(save, writer) for writer in range(8)]:
            saved.result(timeout=WAIT)

    spans.sort()
    assert len(spans) == 8
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    writer = json.loads((target / RECORD).read_text())["writer"]
    assert load_file(str(target / WEIGHTS_FILE))["weight"].unique().tolist() == [float(writer)]
    assert sorted(p.name for p in target.parent.iterdir()) == ["shared"]


@pytest.mark.parametrize(
    "name",
    ["../outside", "asr/../../outside", "/etc/adapters", "asr\\..\\outside", "asr/lora.tmp", "asr/lora.old/x",
     "asr/lora.lock", "ASR/lora", "asr//lora", ""],
)  # fmt: skip
def test_names_that_leave_the_store_or_take_its_own_names_are_refused(tmp_path, name):
    with pytest.raises(InputError, match=re.escape(f"adapter name {name!r}")):
        adapter_path(name, tmp_path)


def test_a_link_out_of_the_store_is_neither_listed_nor_followed(tmp_path):
    store, outside = tmp_path / "store", tmp_path / "elsewhere"
    save_adapter(None, outside / "precious", {"task": "asr", "method": "lora", "backbone": WHISPER}, _record_only)
    (store / "asr").mkdir(parents=True)
    os.symlink(outside, store / "asr" / "linked")

    assert list_adapters(store) == []
    for operation in (adapter_path, resolve_adapter, show_adapter, remove_adapter):
        with pytest.raises(InputError, match="leads out of the store"):
            operation("asr/linked/precious", store)
    assert (outside / "precious" / RECORD).exists()


def test_an_unreadable_record_is_left_out_of_the_listing_with_a_warning(tmp_path):
    for name in ("asr/good", "asr/broken"):
        save_adapter(None, tmp_path / name, {"task": "asr", "method": "lora", "backbone": WHISPER}, _record_only)
    (tmp_path / "asr" / "broken" / RECORD).write_text('{"task": "asr", ')
    with pytest.warns(UserWarning, match=r"broken/speechpeft.json is not valid JSON .*adapters rm asr/broken"):
        assert [a["name"] for a in list_adapters(tmp_path)] == ["asr/good"]
    remove_adapter("asr/broken", tmp_path)
    assert not (tmp_path / "asr" / "broken").exists()
