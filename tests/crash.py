"""Run code in a real Python process that is killed (SIGKILL) at its second rename, as a power cut would."""

import signal
import subprocess
import sys
import textwrap

KILL_AT_SECOND_RENAME = textwrap.dedent("""
    import os, signal

    renames, real_replace = [], os.replace

    def replace(source, destination):
        renames.append(source)
        if len(renames) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(source, destination)

    os.replace = replace  # pathlib's Path.replace calls os.replace
""")


def killed_at_second_rename(code: str) -> None:
    """Run `code` in a fresh interpreter killed at its second `os.replace`; raises AssertionError if it was not."""
    done = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_RENAME + textwrap.dedent(code)], check=False)
    assert done.returncode == -signal.SIGKILL, f"the process was not killed at a second rename (rc {done.returncode})"
