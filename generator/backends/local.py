"""The ``local`` backend: a Hugging Face model run with transformers, on CPU (or CUDA if asked).

The default model is the bundled SmolLM2-135M-Instruct (see ``generator.bundled_model``).
Requests are grouped by sampling settings (one ``generate`` call applies one setting), sorted by
length to limit padding, and run in batches of ``batch_size``. float32 is used on CPU: on the
CPUs measured here bfloat16 is ~3x slower. A request's JSON schema is enforced token by token
(``generator.backends.constrained``, llguidance), as the vllm backend does with structured outputs.
"""

from __future__ import annotations

import logging
import time
from itertools import groupby
from pathlib import Path
from typing import Any

from generator.backends.base import (
    BackendOptions,
    ChatRequest,
    ChatResult,
    Completion,
    FinishReason,
)
from generator.backends.constrained import SchemaGrammars
from generator.bundled_model import is_bundled, resolve_model_dir
from generator.errors import BackendError

logger = logging.getLogger(__name__)


class LocalBackend:
    name = "local"

    def __init__(self, model: str | None, options: BackendOptions, *, data_dir: Path) -> None:
        self._requested = model
        self.options = options
        self.data_dir = data_dir
        self.model = model or "bundled"
        self._model: Any = None
        self._tokenizer: Any = None
        self._grammars: SchemaGrammars | None = None
        self._device = "cpu"

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - both are core dependencies
            raise BackendError(f"the local backend needs torch and transformers: {exc}") from exc
        directory = resolve_model_dir(self._requested, self.data_dir)
        self.model = directory.name if is_bundled(self._requested) else str(directory)
        wants_cuda = self.options.device == "cuda" or (
            self.options.device == "auto" and torch.cuda.is_available()
        )
        if wants_cuda and not torch.cuda.is_available():
            raise BackendError("device 'cuda' was asked for, but torch sees no CUDA device")
        self._device = "cuda" if wants_cuda else "cpu"
        dtype = torch.bfloat16 if wants_cuda else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
            model: Any = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load model from {directory}: {exc}") from exc
        if tokenizer.chat_template is None:
            raise BackendError(f"model {directory}: the tokenizer has no chat template")
        tokenizer.padding_side = "left"  # decoder-only models generate after the prompt
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer = tokenizer
        model.to(self._device)
        self._model = model.eval()
        logger.info("local backend: %s on %s", directory, self._device)

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
        self._grammars = None

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if self._model is None:
            self.load()
        results: dict[str, ChatResult] = {}

        def setting(request: ChatRequest) -> str:
            return request.sampling.model_dump_json()

        for _, group in groupby(sorted(requests, key=setting), key=setting):
            same_setting = sorted(group, key=lambda r: sum(len(m.content) for m in r.messages))
            size = self.options.batch_size
            for start in range(0, len(same_setting), size):
                for result in self._generate_batch(same_setting[start : start + size]):
                    results[result.request_id] = result
        return [results[r.id] for r in requests]

    def _generate_batch(self, batch: list[ChatRequest]) -> list[ChatResult]:
        import torch

        tokenizer, sampling = self._tokenizer, batch[0].sampling
        texts = [
            tokenizer.apply_chat_template(
                [m.model_dump() for m in r.messages], tokenize=False, add_generation_prompt=True
            )
            for r in batch
        ]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(self._device)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        sample = sampling.temperature > 0
        constraints = self._constraints(batch, sampling.n, encoded["input_ids"].shape[1])
        started = time.perf_counter()
        with torch.inference_mode():
            output = self._model.generate(
                **encoded,
                max_new_tokens=sampling.max_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=None,
                num_return_sequences=sampling.n,
                pad_token_id=tokenizer.pad_token_id,
                logits_processor=constraints,
            )
        seconds = time.perf_counter() - started
        prompt_length = encoded["input_ids"].shape[1]
        generated = output[:, prompt_length:].tolist()
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        results = []
        for index, request in enumerate(batch):
            rows = generated[index * sampling.n : (index + 1) * sampling.n]
            completions = [
                self._completion(row, sampling.max_tokens, sampling.stop) for row in rows
            ]
            results.append(
                ChatResult(
                    request_id=request.id,
                    completions=completions,
                    prompt_tokens=int(prompt_tokens[index]),
                    seconds=seconds,
                )
            )
        return results

    def _constraints(self, batch: list[ChatRequest], n: int, prompt_length: int) -> Any:
        """A logits processor that holds each row to its request's JSON schema, or None."""
        from transformers import LogitsProcessorList

        # generate() repeats each prompt n times in place: row i*n + j is request i.
        schemas = [request.json_schema for request in batch for _ in range(n)]
        if all(schema is None for schema in schemas):
            return None
        if self._grammars is None:
            self._grammars = SchemaGrammars(self._tokenizer)
        return LogitsProcessorList([self._grammars.processor(schemas, prompt_length)])

    def _completion(self, tokens: list[int], max_tokens: int, stop: list[str]) -> Completion:
        eos = self._tokenizer.eos_token_id
        reason: FinishReason
        if eos in tokens:
            tokens, reason = tokens[: tokens.index(eos)], "stop"
        else:
            reason = "length" if len(tokens) >= max_tokens else "stop"
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        for marker in stop:
            if marker in text:
                text, reason = text[: text.index(marker)], "stop"
        return Completion(text=text, finish_reason=reason, tokens=len(tokens))
