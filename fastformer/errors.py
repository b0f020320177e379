"""Bad user input: one exception type that every loader, the config check and the trainer raise for a problem the
user can fix (a config key, a data file, a checkpoint, a learning rate), and that scripts/train.py reports as one line.

The message is one line: the file or key, what was found there (e.g. the fields the file has, the detected format),
and the fix. A single run prints it as one ``[ERROR]`` line and exits with code 2, without a traceback; inside a
multirun the job fails as any other (failed.json is written and the sweep goes on).

Subclasses keep the built-in base their callers already catch: ``ConfigError`` (fastformer/config_schema.py) and
``DataUnavailableError`` (a ``FileNotFoundError``, fastformer/data/download.py), ``CheckpointError`` (a
``RuntimeError``) and ``TrainingDivergedError`` (a ``FloatingPointError``, fastformer/train/trainer.py),
``RunDirBusyError`` (fastformer/train/rundir.py).
"""
from __future__ import annotations


class UserInputError(ValueError):
    """A problem with what the user gave (config, data file, checkpoint, hyperparameter); ``str(err)`` is one line
    naming the file or key, what was found, and the fix."""


def one_line(err: BaseException, limit: int = 2000) -> str:
    """The first line of ``str(err)`` (the whole message for a :class:`UserInputError`), capped at ``limit``."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]
