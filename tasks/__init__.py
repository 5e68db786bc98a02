"""Tasks: data, heads, decoding and metrics per task kind (`tasks.catalog.TASKS`), and the synthetic corpus.

Kept import-free so the CLI's `--help` does not load torch; `speechpeft.tasks.catalog` registers the tasks.
"""
