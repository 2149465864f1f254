"""Run a sentence-transformers model's transformer in ONNX Runtime.

sentence-transformers' own `backend="onnx"` needs optimum-onnx, which pins
transformers < 4.58 while sentence-transformers 6 needs transformers >= 5, so
the two cannot be installed together. Instead the model's first module (the
Hugging Face transformer) is exported here with torch's exporter, from the
weights already loaded (no hub, no files beyond a temporary directory), and
optionally quantized to int8. Tokenization and the later modules (pooling,
normalization) stay the model's own, so any model whose first module is a
`Transformer` works, with the same preprocessing as the torch path.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import torch
from torch.jit._trace import TracerWarning

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# 17 is the newest opset torch's TorchScript exporter handles for BERT-like
# models without warnings about unsupported operators.
_OPSET = 17


class _HiddenStates(torch.nn.Module):
    """The transformer with keyword inputs and one tensor out, as the exporter needs."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        output = self.model(**dict(zip(self.input_names, inputs, strict=True)))
        hidden: torch.Tensor = output.last_hidden_state
        return hidden


class OnnxTransformer:
    """Encodes texts with `model`, its transformer module running in ONNX Runtime."""

    def __init__(self, model: SentenceTransformer, *, quantize: bool, threads: int) -> None:
        self._model = model
        sample = self._inputs(["an example sentence to trace the graph", "another"])
        self._input_names = list(sample)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        with tempfile.TemporaryDirectory(prefix="memoryd-onnx-") as tmp:
            path = _export(model, sample, Path(tmp), quantize=quantize)
            # The session reads the file fully; the directory can go afterwards.
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )

    def _inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        features = self._model.preprocess(texts)
        return {
            name: value
            for name, value in features.items()
            if name in ("input_ids", "attention_mask", "token_type_ids")
        }

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        inputs = self._inputs(texts)
        [hidden] = self._session.run(
            ["last_hidden_state"],
            {name: inputs[name].numpy() for name in self._input_names},
        )
        features: dict[str, Any] = {
            **inputs,
            "token_embeddings": torch.from_numpy(hidden),
        }
        # Pooling, normalization and whatever else follows the transformer.
        with torch.inference_mode():
            for module in list(self._model)[1:]:
                features = module(features)
        embeddings: npt.NDArray[np.float32] = (
            features["sentence_embedding"].numpy().astype(np.float32)
        )
        return embeddings


def _export(
    model: SentenceTransformer,
    sample: dict[str, torch.Tensor],
    directory: Path,
    *,
    quantize: bool,
) -> Path:
    names = list(sample)
    transformer = model[0].auto_model
    if not isinstance(transformer, torch.nn.Module):
        raise TypeError(f"the model's first module is not a transformer: {type(model[0])}")
    wrapper = _HiddenStates(transformer, names).eval()
    fp32 = directory / "model.onnx"
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with torch.inference_mode(), warnings.catch_warnings():
        # The TorchScript exporter on purpose: the newer torch.export one needs
        # onnxscript and handles this graph no better. It and its helpers warn
        # that they are deprecated, and its tracer notes shape-dependent Python
        # branches (fixed per trace, covered by dynamic_axes): expected, not news.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", TracerWarning)
        # The attention mask's indexing uses no negative indices; bench.embeddings
        # checks the exported graph against torch (cosine >= 0.9999).
        warnings.filterwarnings("ignore", "Exporting aten::index operator", UserWarning)
        torch.onnx.export(
            wrapper,
            tuple(sample[name] for name in names),
            str(fp32),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=_OPSET,
            dynamo=False,
        )
    if not quantize:
        return fp32
    # Imported here: the quantization tooling is only needed for int8.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = directory / "model-int8.onnx"
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
    return int8
