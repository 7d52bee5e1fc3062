"""JSON-schema-constrained decoding for the ``local`` backend, with llguidance.

A small model asked for JSON often writes prose or a numbered list instead; the vllm backend
avoids that with structured outputs, and this module gives the transformers backend the same
guarantee. llguidance (the grammar engine vLLM also ships as a structured-output backend) turns a
schema into a token mask per step: a request with a ``json_schema`` can only produce text the
schema accepts, followed by end-of-sequence. Requests without a schema in the same batch are left
free.

The JSON is compact (fixed ", " and ": " separators, no free whitespace): a free-whitespace
grammar lets a small model spend its token budget on newlines.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)

_COMPACT: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaGrammars:
    """The llguidance tokenizer (built once per model, ~1 s) and a grammar per distinct schema."""

    def __init__(self, hf_tokenizer: Any) -> None:
        import llguidance.hf

        self.eos_token_id: int = hf_tokenizer.eos_token_id
        self.tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer)
        self._grammars: dict[str, str] = {}

    def grammar(self, schema: dict[str, Any]) -> str:
        import llguidance

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = llguidance.LLMatcher.grammar_from_json_schema(
                schema, overrides=_COMPACT
            )
        return self._grammars[key]

    def processor(
        self, schemas: list[dict[str, Any] | None], prompt_length: int
    ) -> SchemaLogitsProcessor:
        import llguidance

        matchers = [
            None if schema is None else llguidance.LLMatcher(self.tokenizer, self.grammar(schema))
            for schema in schemas
        ]
        return SchemaLogitsProcessor(matchers, prompt_length, self.eos_token_id)


class SchemaLogitsProcessor:
    """A transformers logits processor: row i of the batch follows ``matchers[i]`` (None: free).

    transformers calls it once per step with every row's tokens so far; the token sampled at the
    previous step is fed to the row's matcher, then the logits of tokens the grammar forbids next
    are set to -inf. A matcher stops as soon as its JSON is complete; from then on its row may
    only end (transformers pads a finished row whatever the logits say).
    """

    def __init__(self, matchers: list[Any], prompt_length: int, eos_token_id: int) -> None:
        self.matchers = matchers
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self._bits = torch.arange(32, dtype=torch.int32)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import llguidance.torch

        if input_ids.shape[0] != len(self.matchers):
            raise ValueError(f"{input_ids.shape[0]} rows but {len(self.matchers)} matchers")
        steps_done = input_ids.shape[1] - self.prompt_length
        rows = [i for i, m in enumerate(self.matchers) if m is not None and not m.is_stopped()]
        if steps_done > 0 and rows:
            last = input_ids[:, -1].tolist()
            for row in rows:
                if not self.matchers[row].consume_token(last[row]):
                    logger.warning("constrained decoding: %s", self.matchers[row].get_error())
        for row, matcher in enumerate(self.matchers):
            if matcher is not None and matcher.is_stopped():
                eos_score = scores[row, self.eos_token_id].item()
                scores[row] = float("-inf")
                scores[row, self.eos_token_id] = eos_score
        active = [r for r in rows if not self.matchers[r].is_stopped()]
        active = [r for r in active if not self.matchers[r].is_error()]
        if not active:
            return scores
        vocab = scores.shape[1]
        bitmask = llguidance.torch.allocate_token_bitmask(len(active), vocab)
        for slot, row in enumerate(active):
            llguidance.torch.fill_next_token_bitmask(self.matchers[row], bitmask, slot)
        # Unpack 32 tokens per int32 word; not llguidance's own apply function, which needs
        # torch.compile (a C++ toolchain) on CPU.
        allowed = ((bitmask.unsqueeze(-1) >> self._bits) & 1).view(len(active), -1)[:, :vocab]
        index = torch.tensor(active, device=scores.device)
        rows_scores = scores[index]
        rows_scores.masked_fill_(allowed.to(scores.device) == 0, float("-inf"))
        scores[index] = rows_scores
        return scores
