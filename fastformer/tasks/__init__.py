"""Tasks: each owns its data, model construction, loss and evaluation; ``fastformer.train.Trainer`` runs the loop.

Importing this package registers every task (one module per task) in ``TASKS``: ``build_task(cfg)`` constructs the
one named by ``cfg.task.name`` (configs/task/<name>.yaml). The contract is written in fastformer/tasks/base.py.
"""
from fastformer.tasks import classification, newsrec, probe, summarization  # noqa: F401  (each registers a task)
from fastformer.tasks.base import TASKS, Task, build_task, register_task

__all__ = ["TASKS", "Task", "build_task", "register_task"]
