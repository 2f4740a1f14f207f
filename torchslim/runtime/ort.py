"""ONNX Runtime sessions that behave like a model: call them with torch
tensors (or numpy arrays), get a torch tensor back, so ``torchslim.evaluate``
and ``torchslim.analysis.latency`` measure the deployed ONNX model itself.

Session settings (stated, the same for every ONNX model we time):

* ``threads`` intra-op threads (default 1), one inter-op thread, sequential
  execution; thread-pool spinning off, so ORT's idle threads do not steal the
  cores from a model timed right after it (we time models alternately);
* all graph optimisations on (``ORT_ENABLE_ALL``), except the two fusions in
  ``DISABLED_FUSIONS``: on this ONNX Runtime CPU build a fused
  ``SkipLayerNormalization`` runs about 2x slower than the ``Add`` +
  ``LayerNormalization`` it replaces, and ``BiasGelu`` slower than ``Gelu`` with
  the bias folded into the preceding int8 MatMul (measured with
  single-operator graphs, shape 32x128x384, one thread).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["OrtModel", "DISABLED_FUSIONS"]

DISABLED_FUSIONS = ("SkipLayerNormFusion", "BiasGeluFusion")

_NP_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "tensor(double)": np.float64, "tensor(float16)": np.float16, "tensor(bool)": np.bool_,
             "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


class OrtModel:
    """A callable ONNX Runtime session on the CPU.

    >>> m = OrtModel("model.onnx", threads=2)
    >>> logits = m(x)                      # torch in, torch out
    """

    def __init__(self, model: str | os.PathLike | bytes, *, threads: int = 1, optimize: bool = True,
                 disabled_fusions: Sequence[str] = DISABLED_FUSIONS):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                       else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        src = model if isinstance(model, bytes) else str(Path(model))
        where = "the ONNX model bytes" if isinstance(model, bytes) else src
        if not isinstance(model, bytes):
            from ..core.errors import ArtifactError

            if not Path(model).exists():
                raise ArtifactError(f"{src}: no such ONNX file; check the path (write one with `torchslim export`)")
            if Path(model).is_dir():
                raise ArtifactError(f"{src}: is a folder; give the .onnx file inside it")
        kw = {"disabled_optimizers": list(disabled_fusions)} if optimize and disabled_fusions else {}
        try:
            self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"], **kw)
        except Exception as e:  # onnxruntime's load errors (InvalidProtobuf, Fail, ...) name no fix
            from ..core.errors import ArtifactError

            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"{where}: not a readable ONNX model ({type(e).__name__}: {msg}); the file is "
                                "corrupted, truncated or not ONNX: re-export it with `torchslim export`") from None
        self.threads = int(threads)
        self.path = None if isinstance(model, bytes) else Path(model)
        self.inputs = self.session.get_inputs()
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.training = False

    def run(self, *inputs) -> list[np.ndarray]:
        """All outputs as numpy arrays."""
        if len(inputs) != len(self.inputs):
            raise TypeError(f"{self.path or 'ONNX model'} takes {len(self.inputs)} inputs "
                            f"({', '.join(self.input_names)}), got {len(inputs)}")
        feeds = {}
        for spec, x in zip(self.inputs, inputs):
            a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            want = _NP_TYPES.get(spec.type)
            feeds[spec.name] = a.astype(want, copy=False) if want is not None else a
        return self.session.run(None, feeds)

    def __call__(self, *inputs) -> torch.Tensor:
        """The first output as a torch tensor."""
        return torch.from_numpy(self.run(*inputs)[0])

    def eval(self):  # so code written for nn.Module can call it
        return self

    def __repr__(self) -> str:
        return f"OrtModel({self.path or '<bytes>'}, threads={self.threads}, inputs={self.input_names})"
