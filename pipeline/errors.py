"""Errors the user can act on: each names the place (YAML key, space, table, column) and a fix;
warnings for what the pipeline goes on with."""

import logging
import warnings

log = logging.getLogger("pipeline")


class PipelineError(Exception):
    """Base class for every error this project raises on purpose."""


class SpecError(PipelineError):
    """The YAML spec is wrong: unknown name, missing key, cycle, type mismatch."""

    def __init__(self, place: str, problem: str, fix: str = "") -> None:
        self.place = place
        self.problem = problem
        self.fix = fix
        message = f"spaces.yaml {place}: {problem}"
        if fix:
            message += f" -> {fix}"
        super().__init__(message)


class JoinValidationError(PipelineError):
    """A relationship failed a blocking join check; training would be wrong, so it stops."""


class TrainingHealthError(PipelineError):
    """A space's training still fails its health checks after the corrective retry."""


class DataError(PipelineError):
    """The data cannot be used as asked (e.g. a space with no usable column)."""


class DataWarning(UserWarning):
    """The data is usable but not as clean as it should be (orphans, unparseable values,
    schema drift): the pipeline goes on, says what it did, and reports it."""


class LeakageWarning(DataWarning):
    """An input predicts a target almost perfectly on its own: probably known only after the
    outcome. The predictor still trains; the warning is recorded with its run."""


def warn_all(where: str, messages: list[str], category: type[Warning] = DataWarning) -> None:
    """Log each message and raise it as a warning of `category` (the step goes on); `where`
    names the space or step."""
    for message in messages:
        log.warning("%s: %s", where, message)
        warnings.warn(f"{where}: {message}", category, stacklevel=3)
