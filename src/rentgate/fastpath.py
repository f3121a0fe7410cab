"""The order path's hot statements on PostgreSQL, one round trip each.

An order takes two statements on PostgreSQL: the admission, which also checks
the API key and claims the Idempotency-Key, and the activation, which also
stores the response for that key. Each runs alone in autocommit mode, so
PostgreSQL makes it atomic without a BEGIN or a COMMIT round trip. The
admission and the activation chain their steps as data-modifying CTEs, and
each either does all of its work or none of it:

- a step that would break a constraint (a pool over capacity, a month over
  its credit limit, an Idempotency-Key claimed already) aborts the whole
  statement;
- some conditions make every step match no row, so the statement changes
  nothing: an unknown, revoked or admin key, a changed price, an unknown pool
  name, a credit limit in another currency, a lease no longer pending.

Either way the caller falls back to the general path in ``rentgate.ordering``,
which SQLite always takes. It checks the key and reads and locks step by step.
Then it raises the 401, 402, 403, 409 or 422 that explains the rejection, or
replays the response stored for the Idempotency-Key. Other routes look the
API key up with ``find_key``.

The statements go straight to the psycopg cursor of a pooled SQLAlchemy
connection, because SQLAlchemy's execution layer costs more CPU than the
statement itself on a fast link. ``_fetch_one`` turns psycopg errors into
SQLAlchemy's, as ``Connection.execute`` would, so callers catch one family.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

FIND_KEY = """
SELECT id, role, tenant_id, key_hash FROM api_keys
 WHERE prefix = %(prefix)s AND revoked_at IS NULL
"""

# ``caller`` is the live tenant key with the request's prefix and hash.
# ``ready`` is true when there is one, the quoted price is still the current
# one and the tenant's credit limit, if any, is in the order's currency.
# ``placed`` is true when, in addition, the order took units from a pool, or
# asked for no pool by name and its offering has none. Every write depends on
# one of the two.
ADMIT = """
WITH caller AS (
    SELECT k.id, k.tenant_id FROM api_keys k
     WHERE k.prefix = %(key_prefix)s AND k.key_hash = %(key_hash)s
       AND k.revoked_at IS NULL AND k.role = 'tenant'
       AND k.tenant_id IS NOT NULL
),
ready AS (
    SELECT EXISTS (SELECT 1 FROM caller)
    AND (
        SELECT p.id FROM prices p
         WHERE p.offering = %(offering)s AND p.valid_from <= %(now)s
         ORDER BY p.valid_from DESC, p.id DESC
         LIMIT 1
    ) = %(price_id)s
    AND NOT EXISTS (
        SELECT 1 FROM tenants t
         WHERE t.id = (SELECT tenant_id FROM caller)
           AND t.credit_limit_minor IS NOT NULL
           AND t.credit_currency <> %(currency)s
    ) AS ok
),
pool AS (
    UPDATE capacity_pools SET used = used + %(quantity)s
     WHERE id = (
        SELECT c.id FROM capacity_pools c
         WHERE c.offering = %(offering)s
           AND (%(pool_name)s::text IS NULL OR c.name = %(pool_name)s::text)
         ORDER BY c.is_default DESC, c.id
         LIMIT 1
     )
       AND (SELECT ok FROM ready)
    RETURNING id, name
),
placed AS (
    SELECT (SELECT ok FROM ready) AND (
        EXISTS (SELECT 1 FROM pool)
        OR (
            %(pool_name)s::text IS NULL
            AND NOT EXISTS (
                SELECT 1 FROM capacity_pools c WHERE c.offering = %(offering)s
            )
        )
    ) AS ok
),
credit AS (
    INSERT INTO credit_periods (tenant_id, period, limit_minor, used_minor)
    SELECT t.id, %(period)s::text, GREATEST(t.credit_limit_minor, 0),
           %(amount_minor)s::bigint
      FROM tenants t
     WHERE t.id = (SELECT tenant_id FROM caller)
       AND t.credit_limit_minor IS NOT NULL
       AND (SELECT ok FROM placed)
    ON CONFLICT (tenant_id, period) DO UPDATE
       SET used_minor = credit_periods.used_minor + EXCLUDED.used_minor
    RETURNING period
),
claim AS (
    INSERT INTO idempotency_keys (
        tenant_id, route, key, request_hash, lease_id, created_at
    )
    SELECT tenant_id, %(claim_route)s::text, %(claim_key)s::text,
           %(request_hash)s::text, %(lease_id)s::text, %(now)s::timestamptz
      FROM caller
     WHERE %(claim_key)s::text IS NOT NULL AND (SELECT ok FROM placed)
)
INSERT INTO leases (
    id, tenant_id, offering, provider, pool_id, quantity, hours, unit,
    unit_price, currency, amount_minor, credit_period, state, details,
    created_at, updated_at
)
SELECT
    %(lease_id)s::text, (SELECT tenant_id FROM caller), %(offering)s::text,
    %(provider)s::text, (SELECT id FROM pool), %(quantity)s::integer,
    %(hours)s::integer, %(unit)s::text, %(unit_price)s::numeric,
    %(currency)s::text, %(amount_minor)s::bigint, (SELECT period FROM credit),
    'pending',
    CAST(
        CAST(%(details)s AS jsonb)
        || jsonb_build_object('pool', (SELECT name FROM pool))
        AS json
    ),
    %(now)s::timestamptz, %(now)s::timestamptz
 WHERE (SELECT ok FROM placed)
RETURNING (SELECT id FROM caller), tenant_id, pool_id, (SELECT name FROM pool),
          credit_period
"""

# The UPDATE matches only a pending lease, and the charge is inserted only for
# the row it changed, so a lease the reconcile job settled meanwhile is left
# alone and no second charge is booked. The response is stored on the lease's
# Idempotency-Key claim, if it has one, only with that activation.
ACTIVATE = """
WITH activated AS (
    UPDATE leases
       SET state = 'active', resource_id = %(resource_id)s,
           activated_at = %(now)s, updated_at = %(now)s,
           expires_at = %(expires_at)s,
           details = COALESCE(CAST(%(details)s AS json), details)
     WHERE id = %(lease_id)s AND state = 'pending'
    RETURNING id, tenant_id, offering, amount_minor, currency
),
answered AS (
    UPDATE idempotency_keys
       SET response_status = %(response_status)s::integer,
           response_body = CAST(%(response_body)s AS json),
           completed_at = %(now)s::timestamptz
     WHERE %(response_status)s::integer IS NOT NULL
       AND lease_id = %(lease_id)s AND response_status IS NULL
       AND EXISTS (SELECT 1 FROM activated)
)
INSERT INTO ledger_entries (
    lease_id, tenant_id, offering, kind, amount_minor, currency, booked_at, note
)
SELECT id, tenant_id, offering, 'charge', amount_minor, currency,
       %(now)s::timestamptz, 'order'
  FROM activated
RETURNING id
"""


def enabled(engine: Engine) -> bool:
    """Tell whether ``engine`` is PostgreSQL through psycopg, which these need."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


def find_key(connection: Connection, prefix: str) -> tuple[Any, ...] | None:
    """Return (id, role, tenant_id, key_hash) of the live key with ``prefix``."""
    return _fetch_one(connection, FIND_KEY, {"prefix": prefix})


def admit(connection: Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Reserve units and credit and insert the pending lease, in one statement.

    ``values`` names the lease's columns as ADMIT binds them, ``details``
    being the order as JSON text, plus the API key's prefix and SHA-256 and
    the Idempotency-Key claim (route, key, request hash, or None). Returns
    (key_id, tenant_id, pool_id, pool_name, credit_period) of the lease
    inserted, or None when the statement changed nothing. Raises
    IntegrityError when a reservation would break a CHECK constraint or the
    Idempotency-Key is claimed already, which also changes nothing.
    """
    return _fetch_one(connection, ADMIT, values)


def activate(
    connection: Connection,
    *,
    lease_id: str,
    resource_id: str,
    now: datetime,
    expires_at: datetime | None,
    details: dict[str, Any] | None,
    response: tuple[int, dict[str, Any]] | None = None,
) -> bool:
    """Make a pending lease active and book its charge; False if not pending.

    ``details`` replaces the stored details when given. ``response``, the
    status and body to replay, is stored on the lease's Idempotency-Key claim.
    """
    status, body = response if response is not None else (None, None)
    row = _fetch_one(
        connection,
        ACTIVATE,
        {
            "lease_id": lease_id,
            "resource_id": resource_id,
            "now": now,
            "expires_at": expires_at,
            "details": json.dumps(details) if details is not None else None,
            "response_status": status,
            "response_body": json.dumps(body) if body is not None else None,
        },
    )
    return row is not None


def _fetch_one(
    connection: Connection, sql: str, params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    driver_connection = connection.connection.driver_connection
    try:
        cursor = driver_connection.execute(sql, params)  # type: ignore[union-attr]
        return cursor.fetchone()
    except psycopg.Error as exc:
        dialect = connection.dialect
        invalidated = dialect.is_disconnect(exc, driver_connection, None)
        if invalidated:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            psycopg.Error,
            connection_invalidated=invalidated,
            dialect=dialect,
        ) from exc
