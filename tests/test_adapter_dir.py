"""The adapter directory survives a save cut short: the adapter saved before is still there to load."""

import json

from speechpeft.adapter_dir import read_record, save_adapter
from tests.crash import killed_at_second_rename


def save_record(model, directory):
    """A method's `save` that writes nothing but the directory (the record is what is checked)."""
    directory.mkdir()


def test_an_adapter_whose_save_was_killed_between_the_renames_is_read_back(tmp_path):
    adapter = tmp_path / "adapter"
    save_adapter(None, adapter, {"task": "kws", "version": 1}, save_record)
    killed_at_second_rename(f"""
        from pathlib import Path
        from speechpeft.adapter_dir import save_adapter
        save_adapter(None, Path({str(adapter)!r}), {{"task": "kws", "version": 2}}, lambda model, d: d.mkdir())
    """)
    assert not adapter.exists()  # the process died between the renames

    assert read_record(adapter)["version"] == 1
    save_adapter(None, adapter, {"task": "kws", "version": 3}, save_record)
    assert json.loads((adapter / "speechpeft.json").read_text())["version"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
