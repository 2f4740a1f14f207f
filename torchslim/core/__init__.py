from .config import Config, apply, apply_stage, config_class, register_config, register_handler, registered_configs
from .context import Context
from .errors import ArtifactError, ConfigError, DataError, ModelError, TorchslimError
from .scope import Scope
from .stage import StageResult

__all__ = [
    "Config", "apply", "apply_stage", "StageResult", "config_class", "register_config", "register_handler", "registered_configs",
    "Context", "Scope",
    "TorchslimError", "ConfigError", "ArtifactError", "DataError", "ModelError",
]
