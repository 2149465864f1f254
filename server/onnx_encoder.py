"""Run a sentence-transformers model's transformer in ONNX Runtime.

sentence-transformers' own `backend="onnx"` needs optimum-onnx, which pins
transformers < 4.58 while sentence-transformers 6 needs transformers >= 5, so
the two cannot be installed together. Instead the model's first module (the
Hugging Face transformer) is exported here with torch's exporter, from the
weights already loaded (no hub), BERT models get ONNX Runtime's transformer
fusions (one Attention, SkipLayerNormalization and BiasGelu kernel per layer
instead of dozens of small operators), and the graph is optionally quantized
to int8. Tokenization and the later modules (pooling, normalization) stay the
model's own, so any model whose first module is a `Transformer` works, with
the same preprocessing as the torch path.

Building takes tens of seconds, so the result is cached under `cache_dir`,
keyed by everything that determines it (weights, recipe, library versions),
checked against torch's vectors before it is kept, and verified by checksum
each time it is loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import torch
from torch.jit._trace import TracerWarning

from server.errors import FailedPrecondition

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

# 17 is the newest opset torch's TorchScript exporter handles for BERT-like
# models without warnings about unsupported operators.
_OPSET = 17

# Bump when the export, fusion or quantization steps change: it is part of the
# cache key, so artefacts of an older recipe are rebuilt, never reused.
RECIPE_VERSION = 2

# The worst cosine to torch's vectors, over VALIDATION_TEXTS, an artefact may
# have: a check that the build is sound, not an accuracy promise. fp32 computes
# the same function (only the summation order differs). int8 with dynamic
# activation quantization drifts most on the shortest texts (min ~0.95 on
# "ok", "thanks!"; mean ~0.99), which is why it is opt-in; far below that,
# the build went wrong.
MIN_COSINE = {"fp32": 0.999, "int8": 0.9}

# Varied on purpose (very short, long, other languages, code, numbers): int8
# error is worst on the shortest inputs, where one token's error is the mean.
VALIDATION_TEXTS = [
    "ok",
    "yes",
    "42",
    "thanks!",
    "Prefers tea.",
    "deadline friday",
    "The user prefers oat milk in coffee and avoids dairy.",
    "My sister is allergic to peanuts and carries an epinephrine pen.",
    "Alex moved from Lyon to Montreal in March for a new job (mentioned twice).",
    "Their manager wants weekly summaries sent on Monday mornings, not Fridays.",
    "Le client préfère être contacté par courriel le matin.",
    "Der Nutzer wohnt seit 2019 in Berlin und arbeitet als Lehrer.",
    "用户喜欢喝绿茶。",
    "def f(x): return x ** 2  # squares its input",
    "Phone: +1 (555) 123-4567, email jane.doe@example.org",
    "2024-03-15T10:22:00Z meeting moved to 3pm PST",
    " ".join(
        [
            "The user is planning a two-week trip to Japan next spring and wants to",
            "see Kyoto in cherry blossom season, stay in a ryokan for at least two",
            "nights, avoid overnight buses, and keep the budget under four thousand",
            "dollars including flights from Toronto; they asked for vegetarian",
            "restaurant suggestions and a rail pass comparison.",
        ]
        * 6
    ),
]


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

    def __init__(
        self, model: SentenceTransformer, *, quantize: bool, threads: int, cache_dir: Path
    ) -> None:
        self._model = model
        self._input_names = list(self._inputs(["an example"]))
        path = cached_model(model, cache_dir=cache_dir, quantize=quantize)
        self._session = _session(path, threads)

    def _inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # The model's own tokenizer (a fast, Rust one for every current model),
        # padded to the batch's longest text and truncated at max_seq_length.
        features = self._model.preprocess(texts)
        return {
            name: value
            for name, value in features.items()
            if name in ("input_ids", "attention_mask", "token_type_ids")
        }

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return _encode(self._model, self._session, self._input_names, self._inputs(texts))


def _encode(
    model: SentenceTransformer,
    session: onnxruntime.InferenceSession,
    input_names: list[str],
    inputs: dict[str, torch.Tensor],
) -> npt.NDArray[np.float32]:
    [hidden] = session.run(
        ["last_hidden_state"], {name: inputs[name].numpy() for name in input_names}
    )
    features: dict[str, Any] = {**inputs, "token_embeddings": torch.from_numpy(hidden)}
    # Pooling, normalization and whatever else follows the transformer.
    with torch.inference_mode():
        for module in list(model)[1:]:
            features = module(features)
    embeddings: npt.NDArray[np.float32] = features["sentence_embedding"].numpy().astype(np.float32)
    return embeddings


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    # One call at a time per process (Embedder's lock), each on every core given.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# -- the cached artefact ------------------------------------------------------


def cache_key(model: SentenceTransformer, *, quantize: bool) -> str:
    """A digest of everything the built graph depends on."""
    import onnx
    import transformers

    digest = hashlib.sha256()
    versions = (torch.__version__, transformers.__version__, onnx.__version__)
    digest.update(
        json.dumps(
            {
                "recipe": RECIPE_VERSION,
                "int8": quantize,
                "versions": [*versions, onnxruntime.__version__],
                "config": _transformer(model).config.to_dict(),
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    for name, tensor in sorted(_transformer(model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_model(model: SentenceTransformer, *, cache_dir: Path, quantize: bool) -> Path:
    """The model's ONNX file, built (and validated) on first use, then reused."""
    variant = "int8" if quantize else "fp32"
    key = cache_key(model, quantize=quantize)
    directory = cache_dir.expanduser() / "onnx" / key[:24]
    path = directory / f"model-{variant}.onnx"
    manifest = directory / f"model-{variant}.json"
    # A model baked into an image may sit on a read-only filesystem: a valid
    # artefact is used without creating the directory or its lock file.
    if _valid(path, manifest):
        return path
    directory.mkdir(parents=True, exist_ok=True)
    # A server and a worker starting together build once: the second waits
    # for the lock and then finds the artefact.
    with _locked(directory / ".lock"):
        if _valid(path, manifest):
            return path
        log.info(
            "building the %s ONNX model for the embedding backend (once, tens of seconds); "
            "cached in %s",
            variant,
            directory,
        )
        with tempfile.TemporaryDirectory(prefix="memoryd-onnx-", dir=directory) as tmp:
            built = _build(model, Path(tmp), quantize=quantize)
            worst = _validate(model, built, variant)
            checksum = _sha256(built)
            os.replace(built, path)
        manifest.write_text(
            json.dumps({"sha256": checksum, "key": key, "min_cosine_to_torch": worst}, indent=2)
        )
        log.info("built %s (min cosine to torch %.5f)", path, worst)
        return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _valid(path: Path, manifest: Path) -> bool:
    if not (path.exists() and manifest.exists()):
        return False
    try:
        expected = json.loads(manifest.read_text())["sha256"]
    except (ValueError, KeyError):
        return False
    if _sha256(path) == expected:
        return True
    log.warning("%s does not match its checksum; rebuilding it", path)
    return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _validate(model: SentenceTransformer, path: Path, variant: str) -> float:
    """The worst cosine to torch over VALIDATION_TEXTS; raises below the floor."""
    expected = model.encode(
        VALIDATION_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    session = _session(path, threads=1)
    inputs = {
        name: value
        for name, value in model.preprocess(VALIDATION_TEXTS).items()
        if name in ("input_ids", "attention_mask", "token_type_ids")
    }
    got = _encode(model, session, list(inputs), inputs)
    got /= np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
    worst = float((got * expected).sum(axis=1).min())
    if worst < MIN_COSINE[variant]:
        raise FailedPrecondition(
            f"the {variant} ONNX export of this embedding model drifts from torch's vectors "
            f"(min cosine {worst:.4f} < {MIN_COSINE[variant]}); set "
            "MEMORYD_EMBEDDING_BACKEND=torch (or onnx instead of onnx-int8)"
        )
    return worst


def _build(model: SentenceTransformer, directory: Path, *, quantize: bool) -> Path:
    inputs = {
        name: value
        for name, value in model.preprocess(
            ["an example sentence to trace the graph", "another"]
        ).items()
        if name in ("input_ids", "attention_mask", "token_type_ids")
    }
    path = _export(model, inputs, directory / "exported.onnx")
    path = _fuse(model, path, directory / "fused.onnx")
    if quantize:
        path = _quantize(path, directory / "int8.onnx")
    return path


def _transformer(model: SentenceTransformer) -> Any:
    """The Hugging Face model inside the first module (its `config` untyped)."""
    transformer = getattr(model[0], "auto_model", None)
    if not isinstance(transformer, torch.nn.Module):
        raise TypeError(f"the model's first module is not a transformer: {type(model[0])}")
    return transformer


@contextlib.contextmanager
def _eager_attention(transformer: Any) -> Iterator[None]:
    """Plain matmul-softmax attention while exporting, the pattern ONNX Runtime's
    optimizer fuses; SDPA's export (with its NaN guards) is left unfused."""
    setter = getattr(transformer, "set_attn_implementation", None)
    before = getattr(transformer.config, "_attn_implementation", None)
    if setter is None or before is None:
        yield
        return
    setter("eager")
    try:
        yield
    finally:
        setter(before)


def _export(model: SentenceTransformer, sample: dict[str, torch.Tensor], path: Path) -> Path:
    names = list(sample)
    transformer = _transformer(model)
    wrapper = _HiddenStates(transformer, names).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with (
        torch.inference_mode(),
        _eager_attention(transformer),
        warnings.catch_warnings(),
    ):
        # The TorchScript exporter on purpose: the newer torch.export one needs
        # onnxscript and handles this graph no better. It and its helpers warn
        # that they are deprecated, and its tracer notes shape-dependent Python
        # branches (fixed per trace, covered by dynamic_axes): expected, not news.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", TracerWarning)
        # The attention mask's indexing uses no negative indices; the built
        # graph is checked against torch before it is kept (_validate).
        warnings.filterwarnings("ignore", "Exporting aten::index operator", UserWarning)
        torch.onnx.export(
            wrapper,
            tuple(sample[name] for name in names),
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=_OPSET,
            dynamo=False,
        )
    return path


def _fuse(model: SentenceTransformer, path: Path, out: Path) -> Path:
    """ONNX Runtime's BERT fusions; other architectures keep the plain graph
    (the session's own optimizations still apply)."""
    config = _transformer(model).config
    if getattr(config, "model_type", None) != "bert":
        return path
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(path),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=0,  # fusions only; the session applies the rest at load
    )
    fused.save_model_to_file(str(out))
    return out


def _quantize(path: Path, out: Path) -> Path:
    # Imported here: the quantization tooling is only needed for int8.
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Weights int8 per output channel, activations uint8 per call (dynamic).
    # Measured on this model: reduce_range (7-bit weights, against int16
    # saturation on CPUs without VNNI) and leaving out any one group of layers
    # (QKV, attention output, FFN in or out, first or last layer) all keep the
    # min cosine between 0.91 and 0.97, so the plain recipe stays.
    quantize_dynamic(
        path,
        out,
        weight_type=QuantType.QInt8,
        per_channel=True,
        # The fused operators are in the com.microsoft domain, which shape
        # inference does not type; their outputs are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return out
