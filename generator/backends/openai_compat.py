"""The ``openai`` backend: any OpenAI-compatible chat endpoint (``vllm serve``, hosted APIs).

Uses the official ``openai`` client, which retries 408/409/429/5xx and connection errors with
exponential backoff and honours ``timeout``. Requests run concurrently, at most
``max_concurrency`` at a time. A JSON schema is sent as ``response_format`` (json_schema), which
vLLM's server and most compatible servers enforce.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generator.backends.base import BackendOptions, ChatRequest, ChatResult, Completion
from generator.errors import BackendError

logger = logging.getLogger(__name__)


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str | None, options: BackendOptions) -> None:
        if not options.base_url:
            raise BackendError(
                "the openai backend needs a base URL (--base-url or OPENAI_BASE_URL)"
            )
        self.options = options
        self.model = model or ""
        self._client: Any = None

    def load(self) -> None:
        if self._client is not None:
            return
        import openai

        client = openai.OpenAI(
            base_url=self.options.base_url,
            api_key=self.options.api_key,
            timeout=self.options.timeout_s,
            max_retries=self.options.max_retries,
        )
        try:
            served = [m.id for m in client.with_options(max_retries=1, timeout=10).models.list()]
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach the OpenAI-compatible endpoint at {self.options.base_url}: {exc}"
            ) from exc
        except openai.APIStatusError as exc:
            raise BackendError(
                f"the endpoint at {self.options.base_url} refused to list models: {exc.message}"
            ) from exc
        if not self.model:
            if not served:
                raise BackendError(f"the endpoint at {self.options.base_url} serves no model")
            self.model = served[0]
        elif served and self.model not in served:
            raise BackendError(
                f"model {self.model!r} is not served at {self.options.base_url} "
                f"(it serves: {', '.join(served)})"
            )
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if self._client is None:
            self.load()
        workers = min(self.options.max_concurrency, max(len(requests), 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self._one, requests))

    def _one(self, request: ChatRequest) -> ChatResult:
        import openai

        sampling = request.sampling
        arguments: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in request.messages],
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            arguments["seed"] = sampling.seed
        if sampling.stop:
            arguments["stop"] = sampling.stop
        if request.json_schema is not None:
            arguments["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema},
            }
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(**arguments)
        except openai.APIError as exc:
            raise BackendError(
                f"request {request.id} failed at {self.options.base_url}: {exc}"
            ) from exc
        seconds = time.perf_counter() - started
        usage = response.usage
        completions = [
            Completion(
                text=choice.message.content or "",
                finish_reason="length" if choice.finish_reason == "length" else "stop",
                tokens=0,
            )
            for choice in response.choices
        ]
        if usage is not None and completions:
            # The API reports tokens per response, not per choice: share them out evenly.
            share, rest = divmod(usage.completion_tokens, len(completions))
            completions = [
                c.model_copy(update={"tokens": share + (1 if i < rest else 0)})
                for i, c in enumerate(completions)
            ]
        return ChatResult(
            request_id=request.id,
            completions=completions,
            prompt_tokens=usage.prompt_tokens if usage is not None else 0,
            seconds=seconds,
        )
