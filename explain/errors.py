"""Typed errors whose messages say what happened and what to do next."""


class SkinExplainError(Exception):
    """Base class of every error this library raises on purpose."""


class InputImageError(SkinExplainError, ValueError):
    """The photo cannot be used: not an image, damaged, too large, or an unsupported kind."""


class RequestError(SkinExplainError, ValueError):
    """A request's setting is not one this model offers: an unknown CAM method, class or map
    resolution, or an opacity outside 0..1."""


class ModelNotConfiguredError(SkinExplainError):
    """No model folder, Hub repo or bundled default model is available."""


class ModelDownloadError(SkinExplainError):
    """The configured Hub model could not be fetched (missing repo, file or revision; offline)."""


class ModelFormatError(SkinExplainError):
    """A model folder breaks the folder contract, or its model file is damaged or unsafe."""


class ServerStoppingError(SkinExplainError):
    """The app is shutting down (a restart or redeploy) and takes no new requests."""
