"""Directories replaced whole: a crash between the two renames of a swap loses nothing."""

import os
from pathlib import Path

import pytest

from speechpeft.directories import recover_directory, replace_directory, staged_replacement, staging_directory
from tests.crash import killed_at_second_rename


def version(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "version.txt").write_text(text)
    return directory


def test_replace_directory_puts_the_staged_version_in_place_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "checkpoint"
    replace_directory(version(staging_directory(target), "1"), target)
    replace_directory(version(staging_directory(target), "2"), target)
    assert (target / "version.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_process_killed_between_the_two_renames_loses_nothing(tmp_path):
    target = version(tmp_path / "checkpoint", "1")
    staged = version(staging_directory(target), "2")
    killed_at_second_rename(f"""
        from pathlib import Path
        from speechpeft.directories import replace_directory
        replace_directory(Path({str(staged)!r}), Path({str(target)!r}))
    """)
    assert not target.exists()  # killed between the renames: the previous version is only in checkpoint.old

    recover_directory(target)
    assert (target / "version.txt").read_text() == "1"
    replace_directory(version(staging_directory(target), "3"), target)  # the next save goes on from there
    assert (target / "version.txt").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_failing_second_rename_puts_the_previous_version_back(tmp_path, monkeypatch):
    target = version(tmp_path / "checkpoint", "1")
    staged = version(staging_directory(target), "2")
    renames, real_replace = [], os.replace

    def replace(source, destination):
        renames.append(source)
        if len(renames) == 2:
            raise OSError("disk gone")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        replace_directory(staged, target)
    assert (target / "version.txt").read_text() == "1"


def test_recovery_leaves_a_complete_directory_alone(tmp_path):
    target = version(tmp_path / "checkpoint", "2")
    version(tmp_path / "checkpoint.old", "1")  # a swap that completed but died before deleting the old one
    recover_directory(target)
    recover_directory(tmp_path / "never-written")
    assert (target / "version.txt").read_text() == "2"
    assert not (tmp_path / "never-written").exists()


def test_staging_drops_what_an_interrupted_writer_left(tmp_path):
    target = tmp_path / "model"
    version(tmp_path / "model.tmp", "half written")
    staged = staging_directory(target)
    assert staged == tmp_path / "model.tmp" and not staged.exists()


def test_a_staged_replacement_that_raises_keeps_the_target(tmp_path):
    target = version(tmp_path / "weights", "shipped")
    with pytest.raises(RuntimeError, match="measurement failed"), staged_replacement(target) as staged:
        version(staged, "candidate")
        raise RuntimeError("measurement failed")
    assert (target / "version.txt").read_text() == "shipped"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]
