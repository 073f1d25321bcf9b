"""The sandbox's tunables: wire format of the webhooks it sends, delivery schedule, rate limit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


class ConfigError(ValueError):
    """An unknown or invalid sandbox setting."""


@dataclass
class SandboxConfig:
    """Defaults are the platform's documented values (cryptomate.md §1.5, §3, §5.7)."""

    generation: Literal["A", "B"] = "B"  # A: operation/sub_operation; B: product/event_type
    casing: Literal["upper", "lower"] = "upper"  # observed traffic was UPPERCASE
    amounts: Literal["string", "number"] = "number"  # observed traffic sent JSON numbers
    rate_limit_per_s: int = 15
    rate_limit_window_s: float = 1.0
    rate_limit_enabled: bool = True
    penalty_cap_s: float = 300.0
    penalty_reset_s: float = 3600.0
    retry_base_s: float = 1.0  # regular events: 1 s, doubling
    max_attempts: int = 10
    regular_timeout_s: float = 30.0
    authorization_timeout_s: float = 1.2  # the whole response, no retry; timeout = decline
    three_ds_ttl_s: float = 300.0  # assumed (not documented by CryptoMate)
    duplicate: int = 0  # extra copies of every delivered event (redelivery injection)
    delivery_delay_s: float = 0.0  # wait before the first attempt of every event

    def update(self, values: dict[str, Any]) -> None:
        """Apply a partial update (POST /_sandbox/config), validating names and values."""
        names = {f.name: f for f in fields(self)}
        for name, value in values.items():
            if name not in names:
                raise ConfigError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if name == "generation":
                value = str(value).upper()
                if value not in ("A", "B"):
                    raise ConfigError("generation must be A or B")
            elif name == "casing":
                value = str(value).lower()
                if value not in ("upper", "lower"):
                    raise ConfigError("casing must be upper or lower")
            elif name == "amounts":
                value = str(value).lower()
                if value not in ("string", "number"):
                    raise ConfigError("amounts must be string or number")
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{name} must be a boolean")
            else:
                try:
                    value = type(current)(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"{name} must be a number") from None
                if value < 0:
                    raise ConfigError(f"{name} must not be negative")
            setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
