"""Checks before anything is written: structure, and length under the trainer's chat template.

Length is what a trainer would truncate: the conversation rendered with the configured
tokenizer's chat template (default: the bundled SmolLM2's), counted in tokens. Counting every
item is the slow part of an export, so an item whose rendered text has fewer UTF-8 bytes than the
limit (minus room for added special tokens) is passed without tokenising: a token of these
tokenizers (byte-level BPE, WordPiece, Unigram) covers at least one byte.

Counts are cached in the store per (tokenizer fingerprint, conversation hash): the scoring
workers count each candidate under the default tokenizer when they route it to review, and
every export saves what it counted, so a conversation is tokenised once, not at every export.
An edited conversation hashes differently and is counted again.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Protocol, cast

import orjson
from pydantic import ValidationError

from generator.dataset_reader import describe
from generator.errors import ConfigError
from generator.export.rows import Row, Turns, preference_row, row_messages, sft_row, uses_tools
from generator.schema import SFTExample
from generator.tools import call_problems

_SPECIAL_TOKEN_ROOM = 8
DEFAULT_MAX_LENGTH = 2048  # tokens; the export's and the eval report's default


def structure_problem(row: Row) -> str | None:
    """Why the row is not a well-formed conversation, or None."""
    if uses_tools(row):
        return _tool_structure_problem(row)
    for conversation in row_messages(row):
        for index, message in enumerate(conversation):
            content = message["content"]
            if not content or content.isspace():  # isspace, not strip: no copy of the text
                return f"turn {index + 1} ({message['role']}) is empty"
        problem = _roles_problem(tuple([m["role"] for m in conversation]))
        if problem is not None:
            return problem
    return None


def _tool_structure_problem(row: Row) -> str | None:
    """A tool-calling row (rare next to plain ones) is checked by the schema itself: calls
    answered in order, an assistant answer last, the calls fitting the tools listed."""
    if "messages" not in row:
        return "tool calls in a preference pair: gapfill exports tool use as SFT rows only"
    try:
        example = SFTExample.model_validate(row)
    except ValidationError as exc:
        return describe(exc)
    problems = call_problems(example)
    return problems[0] if problems else None


@functools.lru_cache(maxsize=1024)
def _roles_problem(roles: tuple[str, ...]) -> str | None:
    """Why this sequence of roles is no conversation to train on, or None (few distinct ones)."""
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
    """A Hugging Face tokenizer from a local directory; by default the bundled model's."""
    from generator.bundled_model import ensure_converted, is_bundled

    if is_bundled(name):
        path = ensure_converted(data_dir)
    else:
        path = Path(str(name)).expanduser()
        if not path.is_dir() or not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise ConfigError(f"--tokenizer {name}: not a directory holding a tokenizer")
    return _loaded(path.resolve(), _files_state(path))


def _files_state(path: Path) -> tuple[tuple[str, int, int], ...]:
    """The tokenizer files' names, sizes and modification times: a changed file is reloaded."""
    files = sorted(f for f in path.iterdir() if f.is_file())
    return tuple((f.name, (stat := f.stat()).st_size, stat.st_mtime_ns) for f in files)


@functools.lru_cache(maxsize=4)
def _loaded(path: Path, files: tuple[tuple[str, int, int], ...]) -> Any:
    """Loaded once per process (and state of its files): the review UI exports again and again,
    and loading took a tenth of an export of 20,000 items."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


class TokenCountCache(Protocol):
    """Token counts by (tokenizer fingerprint, conversation key); the store is one."""

    def token_counts(self, fingerprint: str, keys: list[str]) -> list[int | None]: ...

    def save_token_counts(self, fingerprint: str, counts: dict[str, int]) -> None: ...


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What decides a token count: the tokenizer's whole definition and its chat template."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(orjson.dumps(sorted(tokenizer.get_vocab().items())))
    digest.update(str(tokenizer.chat_template).encode())
    return digest.hexdigest()[:32]


def conversation_key(conversation: Turns) -> str:
    return hashlib.blake2b(orjson.dumps(conversation), digest_size=16).hexdigest()


def payload_conversations(payload: dict[str, Any]) -> list[Turns]:
    """The conversations an SFT or preference payload trains on (as an export renders them)."""
    return row_messages(sft_row(payload) if "messages" in payload else preference_row(payload))


# A conversation that is counted with its row's tools carries them in a first pseudo-turn: the
# count, its cache key and the trainer's rendering all depend on them.
_TOOLS_ROLE = "__tools__"


def rendered(conversation: Turns, tools: list[dict[str, Any]] | None) -> Turns:
    """``conversation`` as one unit of counting: with its tools, where it has any."""
    return [{"role": _TOOLS_ROLE, "tools": tools}, *conversation] if tools else conversation


def _unrendered(conversation: Turns) -> tuple[Turns, list[dict[str, Any]] | None]:
    if conversation and conversation[0]["role"] == _TOOLS_ROLE:
        return conversation[1:], conversation[0]["tools"]
    return conversation, None


def template_problem(tokenizer: Any) -> str | None:
    """Why ``tokenizer``'s chat template would lose tool calls or tools when a trainer renders
    a tool-calling row (None if it renders both): such a row would train without them."""
    marker = "gapfill_probe_7f3c"
    probe = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": marker, "arguments": {"q": "arg_" + marker}},
                }
            ],
        },
        {"role": "tool", "name": marker, "content": "result_" + marker},
        {"role": "assistant", "content": "done"},
    ]
    tool = {
        "type": "function",
        "function": {"name": "lookup_" + marker, "parameters": {"type": "object"}},
    }
    try:
        text = tokenizer.apply_chat_template(probe, tools=[tool], tokenize=False)
    except Exception as exc:  # a template that raises on tool turns: any error is the answer
        return f"its chat template fails on tool turns: {type(exc).__name__}: {exc}"[:300]
    if "arg_" + marker not in text:
        return "its chat template drops tool calls"
    if "result_" + marker not in text:
        return "its chat template drops tool results"
    if "lookup_" + marker not in text:
        return "its chat template drops the tools list"
    return None


class LengthCheck:
    """Token counts under a tokenizer's chat template, against ``max_length``."""

    def __init__(
        self, tokenizer: Any, max_length: int, cache: TokenCountCache | None = None
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template to render examples with")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cache = cache
        self.tokenised = 0  # conversations counted with the tokenizer here
        self.cached = 0  # conversations whose count came from the cache
        self._overhead: dict[tuple[str, ...], int] = {}
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = tokenizer_fingerprint(self.tokenizer)
        return self._fingerprint

    def _template_bytes(self, roles: tuple[str, ...]) -> int:
        """Bytes the template adds around contents for this sequence of roles."""
        if roles not in self._overhead:
            probe = [{"role": role, "content": "x"} for role in roles]
            text = self.tokenizer.apply_chat_template(probe, tokenize=False)
            self._overhead[roles] = len(text.encode()) - len(roles)
        return self._overhead[roles]

    def _surely_fits(self, conversation: Turns) -> bool:
        if any([len(m) != 2 for m in conversation]):
            return False  # tool calls and schemas render as the template likes: count them
        size = self._template_bytes(tuple([m["role"] for m in conversation]))
        for message in conversation:
            text = message["content"]
            size += len(text) if text.isascii() else len(text.encode())
        return size + _SPECIAL_TOKEN_ROOM <= self.max_length

    def surely_fits(self, row: Row) -> bool:
        """Whether the row fits by byte count alone: if not, ``problems`` counts its tokens."""
        if "tools" in row:
            return False
        return all([self._surely_fits(conversation) for conversation in row_messages(row)])

    def problems(self, rows: list[Row]) -> list[str | None]:
        """Per row: why it is too long, or None."""
        unsure = [
            (index, rendered(conversation, row.get("tools")))
            for index, row in enumerate(rows)
            for conversation in row_messages(row)
            if "tools" in row or not self._surely_fits(conversation)
        ]
        found: list[str | None] = [None] * len(rows)
        counts = self._counts([conversation for _, conversation in unsure])
        for (index, _conversation), count in zip(unsure, counts, strict=True):
            if count > self.max_length and found[index] is None:
                found[index] = f"{count} tokens under the chat template > {self.max_length}"
        return found

    def prime(self, conversations: list[Turns]) -> int:
        """Count and cache every conversation, whatever its length: a later export may set a
        lower max_length than this check's. How many were given."""
        self._counts(conversations)
        return len(conversations)

    def _counts(self, conversations: list[Turns]) -> list[int]:
        """Token counts, from the cache where it has them; new counts are saved to it."""
        if not conversations:
            return []
        if self.cache is None:
            self.tokenised += len(conversations)
            return self.count(conversations)
        keys = [conversation_key(c) for c in conversations]
        counts = self.cache.token_counts(self.fingerprint, keys)
        missing = [index for index, count in enumerate(counts) if count is None]
        self.cached += len(conversations) - len(missing)
        if missing:
            self.tokenised += len(missing)
            fresh = self.count([conversations[index] for index in missing])
            for index, count in zip(missing, fresh, strict=True):
                counts[index] = count
            self.cache.save_token_counts(
                self.fingerprint, {keys[i]: c for i, c in zip(missing, fresh, strict=True)}
            )
        return cast(list[int], counts)  # every None was filled above

    def count(self, conversations: list[Turns]) -> list[int]:
        """Exact token counts under the chat template, one per conversation (no shortcut); a
        conversation from ``rendered`` is counted with its tools, as a trainer renders it."""
        texts = [
            self.tokenizer.apply_chat_template(turns, tools=tools, tokenize=False)
            for turns, tools in map(_unrendered, conversations)
        ]
        return self._count(texts)

    def _count(self, texts: list[str]) -> list[int]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "encode_batch_fast"):
            # The Rust tokenizer without offsets: half the time of the Python wrapper.
            return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
