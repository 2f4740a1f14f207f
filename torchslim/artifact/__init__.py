"""One-file model artifacts: safetensors weights + JSON metadata, no pickle."""
from .format import FORMAT_VERSION, atomic_write_bytes, build_arch, load, read_metadata, register_container, save
from .specs import apply_structure, record_structure, register_module_spec, set_submodule

__all__ = ["save", "load", "read_metadata", "register_container", "register_module_spec", "record_structure",
           "apply_structure", "set_submodule", "build_arch", "atomic_write_bytes", "FORMAT_VERSION"]
