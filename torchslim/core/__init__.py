from .config import Config, apply, config_class, register_config, register_handler, registered_configs
from .context import Context
from .errors import ArtifactError, ConfigError, DataError, ModelError, TorchslimError
from .scope import Scope

__all__ = [
    "Config", "apply", "config_class", "register_config", "register_handler", "registered_configs",
    "Context", "Scope",
    "TorchslimError", "ConfigError", "ArtifactError", "DataError", "ModelError",
]
