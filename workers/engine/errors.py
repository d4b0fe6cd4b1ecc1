"""Errors the engine raises; each carries a message meant for the person who uploaded the model."""


class EngineError(Exception):
    """Base class: str(err) is a user-facing message."""


class FormatError(EngineError):
    """The upload is not a model this service can load safely (unknown, empty, pickled module...)."""


class ArchiveError(FormatError):
    """An archive breaks the extraction caps or tries to escape its folder."""


class LoadError(EngineError):
    """The model was recognised but could not be built or loaded."""


class EngineFailure(EngineError):
    """The sandboxed child did not produce a result.

    kind is one of: load-error, crash, killed, timeout, oom, bad-output.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
