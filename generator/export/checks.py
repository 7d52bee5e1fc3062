"""Checks before anything is written: structure, and length under the trainer's chat template.

Length is what a trainer would truncate: the conversation rendered with the configured
tokenizer's chat template (default: the embedded SmolLM2's), counted in tokens. Counting every
item is the slow part of an export, so an item whose rendered text has fewer UTF-8 bytes than the
limit (minus room for added special tokens) is passed without tokenising: a token of these
tokenizers (byte-level BPE, WordPiece, Unigram) covers at least one byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from generator.errors import ConfigError
from generator.export.rows import Row, row_messages

_SPECIAL_TOKEN_ROOM = 8


def structure_problem(row: Row) -> str | None:
    """Why the row is not a well-formed conversation, or None."""
    for conversation in row_messages(row):
        roles = [m["role"] for m in conversation]
        for index, message in enumerate(conversation):
            if not message["content"].strip():
                return f"turn {index + 1} ({message['role']}) is empty"
        body = roles[1:] if roles and roles[0] == "system" else roles
        for index, role in enumerate(body):
            expected = "user" if index % 2 == 0 else "assistant"
            if role != expected:
                return f"roles do not alternate user/assistant: {' -> '.join(roles)}"
        if not body or body[-1] != "assistant":
            return "the conversation does not end with an assistant turn"
    return None


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def load_tokenizer(name: str | None, data_dir: Path) -> Any:
    """A Hugging Face tokenizer from a local directory; by default the embedded model's."""
    from transformers import AutoTokenizer

    from generator.embedded_model import ensure_converted

    if name in (None, "", "embedded"):
        path = ensure_converted(data_dir)
    else:
        path = Path(str(name)).expanduser()
        if not path.is_dir() or not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise ConfigError(f"--tokenizer {name}: not a directory holding a tokenizer")
    return AutoTokenizer.from_pretrained(str(path))


class LengthCheck:
    """Token counts under a tokenizer's chat template, against ``max_length``."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template to render examples with")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.tokenised = 0  # conversations that needed the tokenizer (the rest fit by bytes)
        self._overhead: dict[tuple[str, ...], int] = {}

    def _template_bytes(self, roles: tuple[str, ...]) -> int:
        """Bytes the template adds around contents for this sequence of roles."""
        if roles not in self._overhead:
            probe = [{"role": role, "content": "x"} for role in roles]
            text = self.tokenizer.apply_chat_template(probe, tokenize=False)
            self._overhead[roles] = len(text.encode()) - len(roles)
        return self._overhead[roles]

    def _surely_fits(self, conversation: list[dict[str, str]]) -> bool:
        roles = tuple(m["role"] for m in conversation)
        content = sum(len(m["content"].encode()) for m in conversation)
        return content + self._template_bytes(roles) + _SPECIAL_TOKEN_ROOM <= self.max_length

    def problems(self, rows: list[Row]) -> list[str | None]:
        """Per row: why it is too long, or None."""
        rendered: list[tuple[int, str]] = []
        for index, row in enumerate(rows):
            for conversation in row_messages(row):
                if not self._surely_fits(conversation):
                    text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
                    rendered.append((index, text))
        found: list[str | None] = [None] * len(rows)
        if not rendered:
            return found
        self.tokenised += len(rendered)
        counts = self._count([text for _, text in rendered])
        for (index, _text), count in zip(rendered, counts, strict=True):
            if count > self.max_length and found[index] is None:
                found[index] = f"{count} tokens under the chat template > {self.max_length}"
        return found

    def count(self, conversations: list[list[dict[str, str]]]) -> list[int]:
        """Exact token counts under the chat template, one per conversation (no shortcut)."""
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
        return self._count(texts)

    def _count(self, texts: list[str]) -> list[int]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "encode_batch_fast"):
            # The Rust tokenizer without offsets: half the time of the Python wrapper.
            return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
