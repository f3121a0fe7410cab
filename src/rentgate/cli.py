"""The ``rentgate`` command: migrations, demo data, keys, jobs and the server."""

from __future__ import annotations

import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import click
from sqlalchemy import select

from rentgate.accounting.commands import register_commands
from rentgate.config import SettingsError, load_settings
from rentgate.runtime import Runtime

# The same rule as the admin API's tenant names.
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def _runtime() -> Runtime:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    _ensure_sqlite_folder(settings.database_url)
    runtime = Runtime.build(settings)
    _require_head(runtime)
    return runtime


def _require_head(runtime: Runtime) -> None:
    """Stop with a clear message when the database is not migrated to head."""
    from rentgate.migrations import current_revision, head_revision

    with runtime.engine.connect() as connection:
        current = current_revision(connection)
    if current != head_revision():
        runtime.close()
        raise click.ClickException(
            f"The database is at migration {current or 'none'}, not "
            f"{head_revision()}; run `rentgate migrate` first."
        )


def _ensure_sqlite_folder(url: str) -> None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + ":memory:"):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


@click.group()
def main() -> None:
    """Run and operate the rentgate gateway."""


@main.command()
def migrate() -> None:
    """Apply the database migrations up to head."""
    from rentgate.migrations import upgrade

    settings = load_settings()
    _ensure_sqlite_folder(settings.database_url)
    upgrade(settings.database_url)
    click.echo("database migrated to head")


@main.command("seed-demo")
def seed_demo() -> None:
    """Load demo prices and pools and create the demo tenant and its key."""
    from rentgate.seed import seed_demo as run_seed

    runtime = _runtime()
    try:
        with runtime.transaction() as session:
            key = run_seed(session)
    finally:
        runtime.close()
    click.echo("demo prices and capacity pools are loaded")
    if key is None:
        click.echo(
            "demo tenant already exists; its key was printed when it was created. "
            "Make another with: rentgate keys create --tenant demo"
        )
        return
    click.echo("demo tenant created; its API key, shown only this once:")
    click.echo(f"\n    {key}\n")
    click.echo(
        "Try, with KEY set to that key: curl -s -X POST "
        'http://127.0.0.1:5000/rent_resource -H "Authorization: Bearer $KEY" '
        "-H 'Content-Type: application/json' "
        """-d '{"resource_type": "compute", "quantity": 100}'"""
    )


@main.group()
def tenants() -> None:
    """Manage tenants."""


@tenants.command("create")
@click.argument("name")
@click.option(
    "--credit-limit", default=None, help="Monthly credit limit, such as 5000.00."
)
@click.option(
    "--currency", default="USD", show_default=True, help="Currency of the limit."
)
def tenants_create(name: str, credit_limit: str | None, currency: str) -> None:
    """Create a tenant and print its first API key."""
    from decimal import Decimal, InvalidOperation

    from rentgate.auth import create_key
    from rentgate.models import Tenant
    from rentgate.money import CURRENCIES, to_minor

    if not TENANT_NAME.fullmatch(name):
        raise click.BadParameter(
            "must be 1 to 80 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
            param_hint="NAME",
        )
    if currency not in CURRENCIES:
        raise click.BadParameter(
            f"{currency!r} is not supported; use one of {', '.join(CURRENCIES)}",
            param_hint="--currency",
        )
    limit = None
    if credit_limit is not None:
        try:
            amount = Decimal(credit_limit)
            if not amount.is_finite() or not 0 <= amount < Decimal("1e15"):
                raise ValueError("must be a number from 0 to 999999999999999")
            limit = to_minor(amount, currency)
        except InvalidOperation:
            raise click.BadParameter(
                f"{credit_limit!r} is not a number", param_hint="--credit-limit"
            ) from None
        except ValueError as exc:
            raise click.BadParameter(
                f"{credit_limit!r}: {exc}", param_hint="--credit-limit"
            ) from None
    runtime = _runtime()
    try:
        with runtime.transaction() as session:
            if session.scalars(select(Tenant).where(Tenant.name == name)).first():
                raise click.ClickException(f"tenant {name!r} already exists")
            tenant = Tenant(
                name=name, credit_limit_minor=limit, credit_currency=currency
            )
            session.add(tenant)
            session.flush()
            _, key = create_key(
                session, role="tenant", tenant_id=tenant.id, label="first key"
            )
    finally:
        runtime.close()
    click.echo(
        f"tenant {name!r} created with id {tenant.id}; API key, shown only once:"
    )
    click.echo(key)


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option(
    "--tenant", "tenant_name", default=None, help="Tenant name for a tenant key."
)
@click.option("--admin", is_flag=True, help="Create an admin key instead.")
@click.option("--label", default="", help="Free text to recognise the key.")
def keys_create(tenant_name: str | None, admin: bool, label: str) -> None:
    """Create an API key and print it once."""
    from rentgate.auth import create_key
    from rentgate.models import Tenant

    if admin == (tenant_name is not None):
        raise click.UsageError("give exactly one of --tenant NAME or --admin")
    runtime = _runtime()
    try:
        with runtime.transaction() as session:
            tenant_id = None
            if tenant_name is not None:
                tenant = session.scalars(
                    select(Tenant).where(Tenant.name == tenant_name)
                ).first()
                if tenant is None:
                    raise click.ClickException(f"tenant {tenant_name!r} not found")
                tenant_id = tenant.id
            row, key = create_key(
                session,
                role="admin" if admin else "tenant",
                tenant_id=tenant_id,
                label=label,
            )
    finally:
        runtime.close()
    click.echo(f"key {row.prefix} created; shown only once:")
    click.echo(key)


@main.command()
@click.option(
    "--older-than", default=None, type=int, help="Seconds a lease must be pending."
)
def reconcile(older_than: int | None) -> None:
    """Settle pending leases by asking their providers."""
    from rentgate.logs import configure_logging
    from rentgate.reconcile import reconcile as run

    runtime = _runtime()
    # Each settled lease is logged, so the job leaves a record of what it did.
    configure_logging(runtime.settings.log_level, runtime.settings.log_format)
    try:
        age = timedelta(seconds=older_than) if older_than is not None else None
        report = run(runtime, older_than=age)
    finally:
        runtime.close()
    click.echo(
        f"reconciled: {len(report.activated)} activated, {len(report.failed)} failed, "
        f"{len(report.still_pending)} still pending"
    )


@main.command()
def expire() -> None:
    """End leases past their term and free their capacity."""
    from rentgate.leases import expire_leases
    from rentgate.logs import configure_logging

    runtime = _runtime()
    configure_logging(runtime.settings.log_level, runtime.settings.log_format)
    total = 0
    try:
        while True:
            count = expire_leases(runtime)
            total += count
            if count:
                click.echo(f"expired {total} leases so far", err=True)
            if count == 0:
                break
    finally:
        runtime.close()
    click.echo(f"expired {total} leases")


@main.command("prune-idempotency")
def prune_idempotency() -> None:
    """Delete finished idempotency keys older than their time to live."""
    from rentgate.jobs import prune_idempotency_keys

    runtime = _runtime()
    try:
        count = prune_idempotency_keys(runtime)
    finally:
        runtime.close()
    click.echo(f"pruned {count} idempotency keys")


@main.command()
@click.option("--bind", default="127.0.0.1:5000", show_default=True)
@click.option("--workers", default=2, show_default=True, type=int)
def serve(bind: str, workers: int) -> None:
    """Serve the gateway under gunicorn with gunicorn.conf.py."""
    config = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(workers),
    ]
    if config.is_file():
        argv += ["--config", str(config)]
    argv.append("rentgate.wsgi:app")
    os.execv(sys.executable, argv)


# The operator's commands live with the services they call.
register_commands(main, tenants, keys)


if __name__ == "__main__":
    main()
