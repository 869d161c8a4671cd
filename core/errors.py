"""The engine's error hierarchy: one base class, subclasses named for what happened."""

from core.contract.errors import AdapruneError, ErrorCode


class PruningError(AdapruneError):
    """Base class of every error the engine raises on purpose."""

    code: ErrorCode = "pruning_error"


class SpecInvalid(PruningError):
    """The job spec is not valid (outside pydantic: e.g. a spec file that cannot be parsed)."""

    code = "spec_invalid"


class DataInvalid(PruningError):
    """The task data is missing, malformed or unsafe (pickled objects, NaN, labels out of range)."""

    code = "data_invalid"


class ModelLoadFailed(PruningError):
    """The model could not be built, imported or given its weights."""

    code = "model_load_failed"


class TrainingDiverged(PruningError):
    """The loss became NaN or infinite during training or fine-tuning."""

    code = "training_diverged"


class PruneCancelled(PruningError):
    """The caller asked the run to stop (cooperative cancel, checked between batches)."""

    code = "cancelled"


class ArtifactInvalid(PruningError):
    """An artifact directory is incomplete, its checksums disagree, or it cannot be rebuilt."""

    code = "artifact_invalid"


class CheckpointInvalid(PruningError):
    """A checkpoint cannot be resumed from: e.g. written by a newer run-state version."""

    code = "checkpoint_invalid"


class ResourceLimit(PruningError):
    """The job needs more than the worker allows: parameters, memory, data or download size."""

    code = "resource_limit"


class UnsupportedArchitecture(PruningError):
    """The model's architecture cannot take the pruning asked for (the message names the
    model type and what is supported)."""

    code = "unsupported_architecture"
