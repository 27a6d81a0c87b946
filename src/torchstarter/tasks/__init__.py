"""Tasks: what a project contributes on top of the engine (data, network, loss, metrics)."""

from torchstarter.engine.task import Task
from torchstarter.tasks.registry import BUILTIN_TASKS, load_task

__all__ = ["BUILTIN_TASKS", "Task", "load_task"]
