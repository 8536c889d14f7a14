"""What a reply costs, from the per-model price table in ``EASYCLAW_MODEL_PRICES``."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, ConfigDict, Field

ANY_MODEL = "*"
# users.credits_balance and transactions.amount are numeric(16, 6).
CREDIT_QUANTUM = Decimal("0.000001")
THOUSAND = Decimal(1000)


class ModelPrice(BaseModel):
    """What a model costs, in credits per 1,000 tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)


def price_for(prices: Mapping[str, ModelPrice], *models: str | None) -> ModelPrice | None:
    """The price of the first of ``models`` in the table, else the ``"*"`` entry, else None."""
    for model in models:
        if model and model in prices:
            return prices[model]
    return prices.get(ANY_MODEL)


def cost_of(price: ModelPrice | None, *, tokens_in: int, tokens_out: int) -> Decimal:
    """Credits for these tokens (prices are per 1,000), rounded to the ledger's precision."""
    if price is None:
        return Decimal(0)
    raw = (price.input * tokens_in + price.output * tokens_out) / THOUSAND
    return raw.quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP)
