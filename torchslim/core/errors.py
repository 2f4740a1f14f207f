"""Error types. Every error names the file, field or layer at fault and says what to do."""


class TorchslimError(Exception):
    """Base class of all torchslim errors."""


class ConfigError(TorchslimError, ValueError):
    """A config, recipe or command-line value is wrong."""


class ArtifactError(TorchslimError):
    """An artifact file is missing, corrupted, truncated or of an unknown version."""


class DataError(TorchslimError):
    """A data set is unknown or its files are not installed."""


class ModelError(TorchslimError):
    """A model is unknown, cannot be rebuilt, or has a layer a method cannot handle."""
