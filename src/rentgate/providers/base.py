"""The provider interface, its request and result types, and its errors.

Error hierarchy (all subclass ``rentgate.errors.RentgateError``)::

    ProviderError                 base; ``outcome_known`` tells whether the
    │                             provider surely did nothing
    ├── ProviderUnavailable       503, not reached or circuit open
    ├── ProviderRejected          502, the provider refused the order (4xx)
    ├── ProviderBadResponse       502, 5xx, non-JSON or malformed answer
    └── ProviderTimeout           504, deadline passed; outcome unknown
        └── ProviderOutcomeUnknown  504, connection lost after sending
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from rentgate.config import ProviderSettings, Settings
from rentgate.errors import RentgateError

ACTIONS = {
    "compute": ("compute", "rent"),
    "data": ("data", "rent"),
    "platform_training": ("training", "train"),
    "platform_inference": ("inference", "infer"),
    "custom_optimization": ("optimization", "optimize"),
    "custom_training": ("training", "train"),
}


class ProviderError(RentgateError):
    """An upstream provider failed; the lease is settled by ``outcome_known``."""

    status, title, slug = 502, "Provider failed", "provider-failed"
    outcome_known = True


class ProviderUnavailable(ProviderError):
    status, title, slug = 503, "Provider unavailable", "provider-unavailable"


class ProviderRejected(ProviderError):
    status, title, slug = 502, "Provider rejected the order", "provider-rejected"


class ProviderBadResponse(ProviderError):
    status, title, slug = 502, "Provider sent an invalid answer", "provider-bad-answer"


class ProviderTimeout(ProviderError):
    status, title, slug = 504, "Provider timed out", "provider-timeout"
    outcome_known = False


class ProviderOutcomeUnknown(ProviderTimeout):
    title, slug = "Provider outcome unknown", "provider-outcome-unknown"


class Deadline:
    """A wall-clock limit for one provider call, retries included."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds

    def remaining(self) -> float:
        """Return the seconds left, never below zero."""
        return max(0.0, self.expires - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass(frozen=True)
class ProviderRequest:
    """The order data a provider needs to fulfil one lease."""

    lease_id: str
    tenant_id: int
    offering: str
    kind: str
    action: str
    quantity: int
    hours: int | None
    pool: str | None
    order: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "lease_id": self.lease_id,
            "offering": self.offering,
            "kind": self.kind,
            "action": self.action,
            "quantity": self.quantity,
            "hours": self.hours,
            "pool": self.pool,
            "order": self.order,
        }


@dataclass(frozen=True)
class ProviderResult:
    """A fulfilled order: the provider's resource id and optional details."""

    resource_id: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderStatus:
    """A provider's report on a lease it was sent, for reconciliation."""

    state: Literal["active", "failed", "unknown"]
    resource_id: str | None = None
    reason: str = ""


class Provider(ABC):
    """A client of one upstream that fulfils orders.

    Subclasses register under a name in the ``rentgate.providers`` entry-point
    group. ``honours_reference`` is true when the upstream deduplicates on the
    lease id, which makes every retry safe.
    """

    honours_reference = False

    def __init__(self, name: str, config: ProviderSettings, settings: Settings) -> None:
        self.name = name
        self.config = config
        self.settings = settings

    @abstractmethod
    def submit(self, request: ProviderRequest, deadline: Deadline) -> ProviderResult:
        """Fulfil an order, using ``request.lease_id`` as the idempotency reference."""

    @abstractmethod
    def status(self, lease_id: str, deadline: Deadline) -> ProviderStatus:
        """Report what became of a lease sent earlier."""

    @abstractmethod
    def release(self, lease_id: str, resource_id: str, deadline: Deadline) -> None:
        """Give back the resource of a lease."""

    def check(self, deadline: Deadline) -> None:  # noqa: B027
        """Raise ProviderError if the provider cannot take orders now."""

    def close(self) -> None:  # noqa: B027
        """Free connections and threads."""
