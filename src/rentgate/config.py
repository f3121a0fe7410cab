"""Settings read from the environment and an optional ``.env`` file.

Every setting has the prefix ``RENTGATE_``; ``.env.example`` lists them all with
their defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFERINGS = (
    "compute",
    "data",
    "platform_training",
    "platform_inference",
    "custom_optimization",
    "custom_training",
)

PositiveSeconds = Annotated[float, Field(gt=0, le=600)]


class ProviderSettings(BaseModel):
    """Configuration of one named provider instance."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="Registered provider class, such as local or http.")
    base_url: HttpUrl | None = Field(
        default=None, description="Root URL of a remote provider (http kind only)."
    )
    options: dict[str, Any] = Field(default_factory=dict)


class Settings(BaseSettings):
    """All settings of one gateway process."""

    model_config = SettingsConfigDict(
        env_prefix="RENTGATE_", env_file=".env", extra="ignore"
    )

    env: Literal["development", "test", "production"] = "development"
    debug: bool = False
    database_url: str = "sqlite:///var/rentgate.db"
    redis_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line, for log shippers; text: for a terminal.
    log_format: Literal["json", "text"] = "json"

    # Providers: named instances, and which instance fulfils each offering.
    providers: dict[str, ProviderSettings] = Field(
        default_factory=lambda: {"local": ProviderSettings(kind="local")}
    )
    offering_providers: dict[str, str] = Field(default_factory=dict)

    # Outbound calls. The deadline bounds a whole provider call, retries included,
    # and must stay below gunicorn's worker timeout.
    provider_connect_timeout: PositiveSeconds = 2.0
    provider_read_timeout: PositiveSeconds = 8.0
    provider_deadline: PositiveSeconds = 10.0
    provider_max_response_bytes: int = Field(default=1_048_576, ge=1024)
    provider_retry_attempts: int = Field(default=3, ge=1, le=10)
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_reset_seconds: PositiveSeconds = 30.0
    worker_timeout: PositiveSeconds = 30.0

    # Requests.
    max_body_bytes: int = Field(default=65_536, ge=1024, le=10_485_760)
    page_size_default: int = Field(default=20, ge=1)
    page_size_max: int = Field(default=100, ge=1)
    rate_limit: str = "50/second;2000/minute"
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)

    # Background jobs.
    reconcile_after_seconds: int = Field(default=60, ge=1)
    idempotency_ttl_hours: int = Field(default=24, ge=24)

    @model_validator(mode="after")
    def check_consistency(self) -> Settings:
        """Reject combinations that would break a guarantee at run time."""
        if self.env == "production" and self.debug:
            raise ValueError(
                "RENTGATE_DEBUG must be false when RENTGATE_ENV is production"
            )
        if self.provider_deadline >= self.worker_timeout:
            raise ValueError(
                f"RENTGATE_PROVIDER_DEADLINE ({self.provider_deadline}s) must be "
                f"shorter than RENTGATE_WORKER_TIMEOUT ({self.worker_timeout}s)"
            )
        for offering, name in self.offering_providers.items():
            if offering not in OFFERINGS:
                raise ValueError(
                    f"RENTGATE_OFFERING_PROVIDERS names unknown offering {offering!r}; "
                    f"use one of {', '.join(OFFERINGS)}"
                )
            if name not in self.providers:
                raise ValueError(
                    f"RENTGATE_OFFERING_PROVIDERS maps {offering!r} to provider "
                    f"{name!r}, which RENTGATE_PROVIDERS does not define"
                )
        if "local" not in self.providers and len(self.offering_providers) < len(
            OFFERINGS
        ):
            raise ValueError(
                "RENTGATE_PROVIDERS has no 'local' entry, so "
                "RENTGATE_OFFERING_PROVIDERS must map every offering"
            )
        try:
            parse_many(self.rate_limit)
        except ValueError:
            raise ValueError(
                f"RENTGATE_RATE_LIMIT {self.rate_limit!r} is not a rate limit; "
                "write amounts per period such as '50/second;2000/minute'"
            ) from None
        if self.page_size_default > self.page_size_max:
            raise ValueError(
                "RENTGATE_PAGE_SIZE_DEFAULT exceeds RENTGATE_PAGE_SIZE_MAX"
            )
        return self

    def provider_for(self, offering: str) -> str:
        """Return the provider instance name that fulfils ``offering``."""
        return self.offering_providers.get(offering, "local")


class SettingsError(RuntimeError):
    """A setting is missing or invalid; the message names it."""


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning a validation failure into one readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["loc"]:
                field = ".".join(str(part) for part in error["loc"])
                message = f"RENTGATE_{field.upper()}: {message}"
            problems.append(message)
        raise SettingsError("Invalid configuration: " + "; ".join(problems)) from None
