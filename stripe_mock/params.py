"""Typed access to decoded request params, with Stripe's param names in every error.

Unknown params are rejected as Stripe does, so a typo in the sync fails here instead of
being silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ParamError

_CURRENCY = re.compile(r"^[a-z]{3}$")

# Stripe's documented metadata limits.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500


class Reader:
    def __init__(self, data: Mapping[str, Any], path: str = "") -> None:
        self.data = data
        self.path = path

    def name(self, key: str | int) -> str:
        return f"{self.path}[{key}]" if self.path else str(key)

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise ParamError(
                    f"Received unknown parameter: {self.name(key)}",
                    param=self.name(key),
                    code="parameter_unknown",
                )

    def has(self, key: str) -> bool:
        return key in self.data

    def str_or_none(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ParamError(f"Invalid string: {self.name(key)}", param=self.name(key))
        return value

    def required_str(self, key: str) -> str:
        value = self.str_or_none(key)
        if value is None or value == "":
            raise ParamError(
                f"Missing required param: {self.name(key)}.",
                param=self.name(key),
                code="parameter_missing",
            )
        return value

    def int_or_none(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        raw = self.str_or_none(key)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ParamError(
                f"Invalid integer: {raw}", param=self.name(key), code="parameter_invalid_integer"
            ) from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ParamError(
                f"{self.name(key)} must be {bounds}",
                param=self.name(key),
                code="parameter_invalid_integer",
            )
        return value

    def required_int(self, key: str) -> int:
        value = self.int_or_none(key)
        if value is None:
            raise ParamError(
                f"Missing required param: {self.name(key)}.",
                param=self.name(key),
                code="parameter_missing",
            )
        return value

    def bool_or_none(self, key: str) -> bool | None:
        raw = self.str_or_none(key)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise ParamError(f"Invalid boolean: {raw}", param=self.name(key))
        return raw == "true"

    def choice_or_none(self, key: str, choices: tuple[str, ...]) -> str | None:
        value = self.str_or_none(key)
        if value is not None and value not in choices:
            raise ParamError(
                f"Invalid {self.name(key)}: must be one of {', '.join(choices)}",
                param=self.name(key),
            )
        return value

    def currency_or_none(self, key: str) -> str | None:
        raw = self.str_or_none(key)
        if raw is None:
            return None
        value = raw.lower()
        if not _CURRENCY.match(value):
            raise ParamError(f"Invalid currency: {raw}", param=self.name(key))
        return value

    def child(self, key: str) -> Reader | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ParamError(f"Invalid object: {self.name(key)}", param=self.name(key))
        return Reader(value, self.name(key))

    def children(self, key: str) -> list[Reader] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise ParamError(
                f"Invalid array: {self.name(key)} must be sent as {self.name(key)}[0], "
                f"{self.name(key)}[1], ...",
                param=self.name(key),
            )
        readers = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ParamError(
                    f"Invalid object: {self.name(key)}[{i}]", param=f"{self.name(key)}[{i}]"
                )
            readers.append(Reader(item, f"{self.name(key)}[{i}]"))
        return readers

    def metadata_or_none(self, key: str = "metadata") -> dict[str, str] | None:
        """Metadata as sent; an empty string value means "unset this key" on update."""
        value = self.data.get(key)
        if value is None:
            return None
        if value == "":
            return {}
        if isinstance(value, list):
            # The form decoder turns a hash keyed "0", "1", ... into a list; undo that.
            value = {str(i): v for i, v in enumerate(value)}
        if not isinstance(value, dict):
            raise ParamError(f"Invalid hash: {self.name(key)}", param=self.name(key))
        if len(value) > MAX_METADATA_KEYS:
            raise ParamError(
                f"Invalid {self.name(key)}: at most {MAX_METADATA_KEYS} keys are allowed",
                param=self.name(key),
            )
        result: dict[str, str] = {}
        for k, v in value.items():
            param = f"{self.name(key)}[{k}]"
            if not isinstance(v, str):
                raise ParamError(f"Invalid metadata value: {param}", param=param)
            if len(k) > MAX_METADATA_KEY_LENGTH:
                raise ParamError(
                    f"Metadata keys can be at most {MAX_METADATA_KEY_LENGTH} characters: {k!r}",
                    param=param,
                )
            if len(v) > MAX_METADATA_VALUE_LENGTH:
                raise ParamError(
                    f"Metadata values can be at most {MAX_METADATA_VALUE_LENGTH} characters",
                    param=param,
                )
            result[k] = v
        return result
