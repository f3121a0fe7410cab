"""The parts a gateway process shares: settings, database and providers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from rentgate.config import Settings
from rentgate.db import make_engine
from rentgate.pricing import PriceCache
from rentgate.providers.local import LocalProvider
from rentgate.providers.registry import ProviderRegistry


@dataclass
class Runtime:
    """Settings, engine, session factories and providers of one process.

    ``sessions`` is for work that writes; ``read_sessions`` only reads, which
    on SQLite avoids taking the database write lock. ``prices`` caches the
    current prices for the PostgreSQL admission statement, which checks them.
    """

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    providers: ProviderRegistry
    prices: PriceCache = field(default_factory=PriceCache)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings)
        providers = ProviderRegistry(settings)
        for provider in providers.providers.values():
            if isinstance(provider, LocalProvider):
                provider.bind(engine)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False),
            read_sessions=sessionmaker(
                engine.execution_options(read_only=True), expire_on_commit=False
            ),
            providers=providers,
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Run a block in a new session and transaction, committed on success."""
        with self.sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.providers.close()
        self.engine.dispose()
