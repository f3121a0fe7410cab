"""Amounts: graduated bands, one half-even rounding, and stored amounts checked
against an exact reference computation over random prices."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from rentgate.accounting.costs import spread_share
from rentgate.models import CapacityPool, Lease, LedgerEntry
from rentgate.pricing import Tier, charge_amount, graduated_total

BANDS = [
    Tier(100, Decimal("2.50")),
    Tier(300, Decimal("2.00")),
    Tier(None, Decimal("1.5")),
]


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        pytest.param(1, "2.50", id="first-unit"),
        pytest.param(100, "250.00", id="first-band-full"),
        pytest.param(101, "252.00", id="second-band-starts"),
        pytest.param(300, "650.00", id="second-band-full"),
        pytest.param(1000, "1700.00", id="open-band"),
    ],
)
def test_graduated_total_bands(quantity, expected):
    assert graduated_total(BANDS, quantity) == Decimal(expected)


def test_graduated_total_needs_open_band():
    with pytest.raises(ValueError, match="the last band must have no upper bound"):
        graduated_total([Tier(10, Decimal(1))], 11)


@pytest.mark.parametrize(
    ("unit_price", "expected"),
    [
        pytest.param("0.125", "0.12", id="half-to-even-down"),
        pytest.param("0.135", "0.14", id="half-to-even-up"),
        pytest.param("0.12500001", "0.13", id="above-half"),
    ],
)
def test_charge_rounds_half_even_once(unit_price, expected):
    amount = charge_amount("unit", Decimal(unit_price), 1, 1, "USD")

    assert amount == Decimal(expected)


def test_charge_rounds_once_not_per_unit():
    # 3 x 0.005 per unit-hour x 1 h: rounding per unit would give 0.00 or 0.03.
    amount = charge_amount("unit_hour", Decimal("0.005"), 3, 1, "USD")

    assert amount == Decimal("0.02")


def test_charge_per_order_ignores_bands():
    amount = charge_amount("order", Decimal("9.99"), 500, 7, "USD", BANDS)

    assert amount == Decimal("9.99")


@given(
    total=st.integers(min_value=0, max_value=10**15),
    parts=st.integers(min_value=1, max_value=600),
)
def test_spread_shares_add_up_exactly(total, parts):
    shares = [spread_share(total, parts, index) for index in range(parts)]

    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert all(abs(Fraction(share) - Fraction(total, parts)) < 1 for share in shares)


def reference_minor(
    unit: str, tiers: list[tuple[int | None, Decimal]], quantity: int, hours: int
) -> int:
    """Compute the amount with fractions and round half-even to cents by hand."""
    per_hour = Fraction(0)
    lower = 0
    for up_to, unit_price in tiers:
        upper = quantity if up_to is None else min(quantity, up_to)
        per_hour += Fraction(unit_price) * max(0, upper - lower)
        lower = max(lower, upper)
    if unit == "order":
        exact = Fraction(tiers[0][1])
    elif unit == "unit":
        exact = per_hour
    else:
        exact = per_hour * hours
    cents = exact * 100
    floor = cents.numerator // cents.denominator
    remainder = cents - floor
    if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    return floor


@st.composite
def unit_prices(draw) -> Decimal:
    places = draw(st.integers(min_value=0, max_value=8))
    scaled = draw(st.integers(min_value=0, max_value=10_000 * 10**places))
    return Decimal(scaled).scaleb(-places)


@st.composite
def price_plans(draw) -> tuple[str, list[tuple[int | None, Decimal]]]:
    unit = draw(st.sampled_from(["order", "unit", "unit_hour"]))
    if unit == "order" or draw(st.booleans()):
        return unit, [(None, draw(unit_prices()))]
    bounds = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=9_999), min_size=1, max_size=3))
    )
    bands: list[tuple[int | None, Decimal]] = [
        (bound, draw(unit_prices())) for bound in bounds
    ]
    return unit, [*bands, (None, draw(unit_prices()))]


def price_body(unit: str, tiers: list[tuple[int | None, Decimal]]) -> dict:
    body: dict = {"offering": "compute", "unit": unit, "currency": "USD"}
    if len(tiers) == 1:
        body["unit_price"] = f"{tiers[0][1]:f}"
    else:
        body["tiers"] = [
            {"up_to": up_to, "unit_price": f"{unit_price:f}"}
            for up_to, unit_price in tiers
        ]
    return body


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=price_plans(),
    quantity=st.integers(min_value=1, max_value=10_000),
    hours=st.integers(min_value=1, max_value=8_760),
)
def test_stored_amount_matches_reference(
    client, seeded, runtime, plan, quantity, hours
):
    unit, tiers = plan
    with runtime.transaction() as session:
        session.execute(update(CapacityPool).values(capacity=10**9))
    priced = client.post(
        "/admin/prices", json=price_body(unit, tiers), headers=seeded.admin_headers
    )
    assert priced.status_code == 201, priced.get_json()

    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": quantity, "hours": hours},
        headers=seeded.other_headers,
    )

    assert response.status_code == 201, response.get_json()
    lease_id = response.get_json()["lease"]["id"]
    expected = reference_minor(unit, tiers, quantity, hours)
    with runtime.read_sessions() as session:
        lease = session.get(Lease, lease_id)
        booked = session.scalars(
            select(LedgerEntry.amount_minor).where(LedgerEntry.lease_id == lease_id)
        ).one()
    assert lease.amount_minor == expected
    assert booked == expected
    assert Decimal(response.get_json()["lease"]["amount"]) == Decimal(expected) / 100
