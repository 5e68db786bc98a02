"""Every built-in task, registered: import `TASKS` from here."""

from speechpeft.tasks import asr as _asr  # noqa: F401  (registers asr)
from speechpeft.tasks import classify as _classify  # noqa: F401  (registers intent, keyword, speaker)
from speechpeft.tasks import tts as _tts  # noqa: F401  (registers tts)
from speechpeft.tasks.base import TASKS, Predictions, Task, TaskEntry

__all__ = ["TASKS", "Predictions", "Task", "TaskEntry"]
