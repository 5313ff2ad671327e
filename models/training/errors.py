"""The two errors the training entrypoint reports as one line (exit code 2) instead of a traceback."""


class TrainingDataError(ValueError):
    """The training or evaluation data cannot be used; the message names rows and columns."""


class TrainingSetupError(RuntimeError):
    """The base model, output directory or options cannot be used."""
