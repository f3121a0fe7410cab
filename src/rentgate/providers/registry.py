"""Finds provider classes by name and builds the configured instances.

A provider's ``kind`` is a name (``local``, ``http`` or one registered in the
``rentgate.providers`` entry-point group) or an import path
``package.module:Class`` of a Provider subclass. The import path lets a test
suite or a private deployment plug in a class without packaging it.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

import pybreaker

from rentgate.config import Settings
from rentgate.providers.base import Provider

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rentgate.providers"


def provider_classes() -> dict[str, type[Provider]]:
    """Return the built-in classes and those that packages register."""
    from rentgate.providers.http import HttpProvider
    from rentgate.providers.local import LocalProvider

    classes: dict[str, type[Provider]] = {"local": LocalProvider, "http": HttpProvider}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in classes and point.value.startswith("rentgate."):
            continue
        try:
            loaded = point.load()
        except Exception:
            log.exception("could not load provider entry point %s", point.value)
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Provider)):
            log.error("entry point %s is not a Provider subclass", point.value)
            continue
        classes[point.name] = loaded
    return classes


class ProviderRegistry:
    """The provider instances of one process, with a circuit breaker each."""

    def __init__(self, settings: Settings) -> None:
        classes = provider_classes()
        self.providers: dict[str, Provider] = {}
        self.breakers: dict[str, pybreaker.CircuitBreaker] = {}
        for name, config in settings.providers.items():
            cls = classes.get(config.kind)
            if cls is None and ":" in config.kind:
                cls = import_provider_class(name, config.kind)
            if cls is None:
                raise ValueError(
                    f"RENTGATE_PROVIDERS: provider {name!r} has unknown kind "
                    f"{config.kind!r}; installed kinds: {', '.join(sorted(classes))}"
                )
            self.providers[name] = cls(name, config, settings)
            self.breakers[name] = pybreaker.CircuitBreaker(
                fail_max=settings.circuit_failure_threshold,
                reset_timeout=settings.circuit_reset_seconds,
                name=name,
                exclude=[_is_not_provider_fault],
                # The call that trips the circuit must raise its own error, so
                # an unknown outcome (a timeout) is not mistaken for a failure
                # and the lease stays pending for reconcile.
                throw_new_error_on_trip=False,
            )
            # NOTE: pybreaker 1.4 holds the breaker's lock for the whole call,
            # so threads of one process call a provider one at a time. Sync
            # gunicorn workers serve one request each, so this only matters
            # for threaded workers.

    def get(self, name: str) -> Provider:
        return self.providers[name]

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


def import_provider_class(name: str, path: str) -> type[Provider]:
    """Import the Provider subclass named by ``package.module:Class``."""
    module_name, _, class_name = path.partition(":")
    try:
        loaded = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"RENTGATE_PROVIDERS: provider {name!r} has kind {path!r}, which "
            f"cannot be imported ({exc}); check the module and class name."
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Provider)):
        raise ValueError(
            f"RENTGATE_PROVIDERS: provider {name!r} has kind {path!r}, which is "
            "not a rentgate.providers.base.Provider subclass."
        )
    return loaded


def _is_not_provider_fault(exc: BaseException) -> bool:
    # A refusal is the provider working as designed, so it must not open the
    # circuit; only unreachable, slow or broken upstreams count.
    from rentgate.providers.base import ProviderError, ProviderRejected

    return isinstance(exc, ProviderRejected) or not isinstance(exc, ProviderError)
