"""Stripe's own definition of the API, as the installed `stripe` SDK carries it, checked against
every request the mock takes and every answer it gives.

Requests: the SDK's generated parameter TypedDicts (`stripe.params.InvoiceCreateParams` ...,
generated from Stripe's OpenAPI spec for the API version the SDK pins) name every parameter,
its nested form keys, its type and its enum values. A parameter they do not declare is refused
as Stripe refuses it (`parameter_unknown`), so a typo in the sync or a parameter Stripe does not
have fails here, in the tests, instead of on the first real month end.

Answers: the SDK's resource classes (`stripe.Invoice`, `stripe.InvoiceLineItem` ...) annotate
every field Stripe sends. A field they do not declare (such as `total_count` on an invoice's
`lines`) or a non-nullable field that is missing is a bug of the mock, answered as a 500 so that
no test can pass on a shape Stripe never sends.
"""

from __future__ import annotations

import builtins
import sys
import types
import typing
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NotRequired, Required, Union

import stripe
from stripe import params as sp
from stripe._list_object import ListObject
from stripe._request_options import RequestOptions
from stripe._search_result_object import SearchResultObject
from stripe._stripe_object import StripeObject, UntypedStripeObject
from typing_extensions import is_typeddict

from .errors import ParamError
from .params import MAX_METADATA_KEY_LENGTH, MAX_METADATA_KEYS, MAX_METADATA_VALUE_LENGTH

# Each endpoint the mock serves, and the SDK's parameters for it.
REQUESTS: dict[str, type[Any]] = {
    "POST /v1/customers": sp.CustomerCreateParams,
    "GET /v1/customers": sp.CustomerListParams,
    "GET /v1/customers/search": sp.CustomerSearchParams,
    "GET /v1/customers/{id}": sp.CustomerRetrieveParams,
    "POST /v1/invoices": sp.InvoiceCreateParams,
    "GET /v1/invoices": sp.InvoiceListParams,
    "GET /v1/invoices/search": sp.InvoiceSearchParams,
    "GET /v1/invoices/{id}": sp.InvoiceRetrieveParams,
    "DELETE /v1/invoices/{id}": sp.InvoiceDeleteParams,
    "POST /v1/invoices/{id}/add_lines": sp.InvoiceAddLinesParams,
    "GET /v1/invoices/{id}/lines": sp.InvoiceListLinesParams,
    "POST /v1/invoices/{id}/finalize": sp.InvoiceFinalizeInvoiceParams,
    "POST /v1/invoices/{id}/void": sp.InvoiceVoidInvoiceParams,
    "POST /v1/invoices/{id}/pay": sp.InvoicePayParams,
    "POST /v1/invoices/{id}/mark_uncollectible": sp.InvoiceMarkUncollectibleParams,
    "POST /v1/invoiceitems": sp.InvoiceItemCreateParams,
    "GET /v1/invoiceitems": sp.InvoiceItemListParams,
    "POST /v1/credit_notes": sp.CreditNoteCreateParams,
    "GET /v1/credit_notes": sp.CreditNoteListParams,
    "GET /v1/credit_notes/{id}": sp.CreditNoteRetrieveParams,
    "POST /v1/credit_notes/{id}/void": sp.CreditNoteVoidCreditNoteParams,
}
# `include[]=total_count` is not in the generated spec, but Stripe still honours it on lists;
# it is the only way to get a count, so the mock accepts exactly that and nothing else.
_INCLUDE = "include"
_LISTS = frozenset(e for e in REQUESTS if e.startswith("GET ") and not e.endswith("}"))
_LISTS |= {"GET /v1/invoices/{id}/lines"}

# Answers, by their `object` field.
RESOURCES: dict[str, type[StripeObject]] = {
    "customer": stripe.Customer,
    "invoice": stripe.Invoice,
    "line_item": stripe.InvoiceLineItem,
    "invoiceitem": stripe.InvoiceItem,
    "credit_note": stripe.CreditNote,
    "credit_note_line_item": stripe.CreditNoteLineItem,
    "event": stripe.Event,
    "list": ListObject,
    "search_result": SearchResultObject,
}
_OPTIONS = frozenset(RequestOptions.__annotations__)
_METADATA_NAMES = frozenset({"metadata", "invoice_metadata"})


class SpecError(Exception):
    """An answer that is not what Stripe's spec says Stripe sends."""


# Resolving the SDK's annotations (strings and forward references to TYPE_CHECKING imports) --


class _Names(dict[str, Any]):
    """Names for evaluating an annotation: its module, then the `stripe` package, else Any."""

    def __init__(self, module: types.ModuleType) -> None:
        super().__init__()
        self.module = module

    def __missing__(self, name: str) -> Any:
        found = vars(self.module).get(name, getattr(builtins, name, None))
        if found is None:
            found = getattr(stripe, name, None) or getattr(sp, name, None)
        return Any if found is None else found


def _resolve(tp: Any, module: types.ModuleType) -> Any:
    if isinstance(tp, str):
        return _resolve(eval(tp, {"__builtins__": {}}, _Names(module)), module)
    if isinstance(tp, typing.ForwardRef):
        return _resolve(tp.__forward_arg__, module)
    return tp


def _fields(cls: type[Any]) -> dict[str, Any]:
    """Annotated fields of a TypedDict or StripeObject class (bases included), unresolved."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = _collect_fields(cls)
    return found


_FIELDS: dict[type[Any], dict[str, Any]] = {}


def _collect_fields(cls: type[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (StripeObject, object, dict) or klass is RequestOptions:
            continue
        for name, tp in vars(klass).get("__annotations__", {}).items():
            if name.startswith("_") or "ClassVar" in str(tp):
                continue
            out[name] = (tp, sys.modules[klass.__module__])
    if issubclass(cls, StripeObject) and (
        hasattr(cls, "OBJECT_NAME") or cls in (ListObject, SearchResultObject)
    ):
        # Every Stripe object names its kind; the hand-written ListObject does not annotate it.
        out.setdefault("object", (str, sys.modules[__name__]))
    if cls is SearchResultObject:
        # Hand-written in the SDK; Stripe's OpenAPI `search_result` also declares `url` (and an
        # optional `total_count`, which the mock never sends).
        out.setdefault("url", (str, sys.modules[__name__]))
    return out


def _args(tp: Any, module: types.ModuleType) -> tuple[Any, ...]:
    return tuple(_resolve(a, module) for a in typing.get_args(tp))


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


# Requests ----------------------------------------------------------------------------------


def check_request(endpoint: str, params: Mapping[str, Any]) -> None:
    """Refuse (ParamError, Stripe's shape) what Stripe's spec does not allow for `endpoint`."""
    spec = REQUESTS.get(endpoint)
    if spec is None:
        raise ParamError(f"The mock has no spec for {endpoint}", param="")
    rest = dict(params)
    include = rest.pop(_INCLUDE, None)
    if include is not None and (
        endpoint not in _LISTS or include not in (["total_count"], {"0": "total_count"})
    ):
        raise ParamError(
            f"Received unknown parameter: {_INCLUDE}", param=_INCLUDE, code="parameter_unknown"
        )
    _check_typeddict(spec, rest, "")


def _check_typeddict(cls: type[Any], value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise ParamError(f"Invalid object: {path}", param=path)
    declared = {k: v for k, v in _fields(cls).items() if k not in _OPTIONS}
    for key in value:
        if key not in declared:
            name = f"{path}[{key}]" if path else key
            raise ParamError(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )
    required: frozenset[str] = getattr(cls, "__required_keys__", frozenset()) - _OPTIONS
    for key in sorted(required):
        if key not in value:
            name = f"{path}[{key}]" if path else key
            raise ParamError(
                f"Missing required param: {name}.", param=name, code="parameter_missing"
            )
    for key, raw in value.items():
        tp, module = declared[key]
        name = f"{path}[{key}]" if path else key
        _check_param(_resolve(tp, module), module, raw, name)
        if key in _METADATA_NAMES and isinstance(raw, dict):
            _check_metadata(raw, name)


def _check_param(tp: Any, module: types.ModuleType, value: Any, path: str) -> None:
    origin = typing.get_origin(tp)
    if origin in (NotRequired, Required):
        return _check_param(_args(tp, module)[0], module, value, path)
    if tp is Any:
        return None
    if _is_union(tp):
        alternatives = _args(tp, module)
        # The SDK widens enums with `|str` for forward compatibility; Stripe itself refuses a
        # value outside the enum, so the literal choices decide for a string.
        choices = [a for alt in alternatives for a in _literals(alt) if a != ""]
        if choices and str in alternatives and isinstance(value, str) and value != "":
            if value not in choices:
                raise ParamError(f"Invalid {path}: must be one of {', '.join(choices)}", param=path)
            return None
        first: ParamError | None = None
        for alt in alternatives:
            try:
                return _check_param(alt, module, value, path)
            except ParamError as e:
                first = first or e
        assert first is not None
        raise first
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ParamError(
                f"Invalid {path}: must be one of {', '.join(map(str, typing.get_args(tp)))}",
                param=path,
            )
        return None
    if tp is str:
        if not isinstance(value, str):
            raise ParamError(f"Invalid string: {path}", param=path)
        return None
    if tp is bool:
        if value not in ("true", "false"):
            raise ParamError(f"Invalid boolean: {value!r}", param=path)
        return None
    if tp is int:
        try:
            int(value)
        except (TypeError, ValueError):
            raise ParamError(
                f"Invalid integer: {value}", param=path, code="parameter_invalid_integer"
            ) from None
        return None
    if tp is Decimal:
        try:
            Decimal(value)
        except (TypeError, InvalidOperation):
            raise ParamError(f"Invalid decimal: {value}", param=path) from None
        return None
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's spelling
        (item,) = _args(tp, module)
        if not isinstance(value, list):
            raise ParamError(f"Invalid array: {path}", param=path)
        for i, element in enumerate(value):
            _check_param(item, module, element, f"{path}[{i}]")
        return None
    if origin in (dict, typing.Dict) or origin is UntypedStripeObject:  # noqa: UP006
        if isinstance(value, list):  # a hash keyed "0", "1", ... decodes as a list
            value = {str(i): v for i, v in enumerate(value)}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ParamError(f"Invalid hash: {path}", param=path)
        return None
    if isinstance(tp, type) and is_typeddict(tp):
        return _check_typeddict(tp, value, path)
    return None  # a type the mock does not check (none of the endpoints it serves use one)


def _literals(tp: Any) -> list[str]:
    if typing.get_origin(tp) is Literal:
        return [a for a in typing.get_args(tp) if isinstance(a, str)]
    return []


def _check_metadata(value: Mapping[str, Any], path: str) -> None:
    """Stripe's documented limits: 50 keys, keys up to 40 characters, values up to 500."""
    if len(value) > MAX_METADATA_KEYS:
        raise ParamError(
            f"Invalid {path}: at most {MAX_METADATA_KEYS} keys are allowed", param=path
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_LENGTH or len(str(item)) > MAX_METADATA_VALUE_LENGTH:
            raise ParamError(
                f"Metadata keys can be at most {MAX_METADATA_KEY_LENGTH} characters and values "
                f"at most {MAX_METADATA_VALUE_LENGTH}: {path}[{key}]",
                param=f"{path}[{key}]",
            )


# Answers -------------------------------------------------------------------------------------


def check_response(body: Any, *, total_count_requested: bool = False) -> None:
    """Raise SpecError listing what differs from Stripe's response schema (errors are fine).
    `total_count_requested`: the request asked for `include[]=total_count` on a list."""
    if isinstance(body, dict) and set(body) == {"error"}:
        return
    if total_count_requested and isinstance(body, dict) and body.get("object") == "list":
        body = {k: v for k, v in body.items() if k != "total_count"}
    problems: list[str] = []
    _check_value(Any, sys.modules[__name__], body, "", problems)
    if problems:
        raise SpecError("; ".join(problems[:20]))


def _check_object(
    cls: type[StripeObject], value: dict[str, Any], path: str, out: list[str]
) -> None:
    fields = _fields(cls)
    generated = cls not in (ListObject, SearchResultObject)
    for key in value:
        if key not in fields:
            out.append(f"{path or cls.__name__}.{key} is not a field of {cls.__name__}")
    if value.get("deleted") is True:
        return  # a deleted object carries only id, object and deleted
    for key, (tp, module) in fields.items():
        resolved = _resolve(tp, module)
        where = f"{path or cls.__name__}.{key}"
        if key not in value:
            if not _nullable(resolved, module):
                out.append(f"{where} is required by {cls.__name__} but missing")
            continue
        if value[key] is None:
            if generated and not _nullable(resolved, module):
                out.append(f"{where} is not nullable in {cls.__name__}")
            continue
        _check_value(resolved, module, value[key], where, out)


def _nullable(tp: Any, module: types.ModuleType) -> bool:
    return _is_union(tp) and type(None) in _args(tp, module)


def _check_value(tp: Any, module: types.ModuleType, value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, dict) and isinstance(value.get("object"), str):
        cls = RESOURCES.get(value["object"])
        if cls is not None:
            return _check_object(cls, value, path, out)
    if tp is Any:
        return None
    origin = typing.get_origin(tp)
    if _is_union(tp):
        alternatives = [a for a in _args(tp, module) if a is not type(None)]
        for alt in alternatives:
            trial: list[str] = []
            _check_value(alt, module, value, path, trial)
            if not trial:
                return None
        out.append(f"{path} does not match {tp}")
        return None
    if origin is Literal:
        if value not in typing.get_args(tp):
            out.append(f"{path} is {value!r}, not one of {typing.get_args(tp)}")
        return None
    if tp is bool or tp is str or tp is int:
        if type(value) is not tp:
            out.append(f"{path} is {type(value).__name__}, not {tp.__name__}")
        return None
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = _args(tp, module)
        if not isinstance(value, list):
            out.append(f"{path} is not a list")
            return None
        for i, element in enumerate(value):
            _check_value(item, module, element, f"{path}[{i}]", out)
        return None
    if isinstance(tp, type) and issubclass(tp, StripeObject):
        if not isinstance(value, dict):
            out.append(f"{path} is not an object")
            return None
        if tp is UntypedStripeObject:
            return None
        return _check_object(tp, value, path, out)
    if origin is not None and isinstance(origin, type) and issubclass(origin, StripeObject):
        if not isinstance(value, dict):
            out.append(f"{path} is not an object")
            return None
        if origin in (ListObject, SearchResultObject):
            _check_object(origin, value, path, out)
        return None
    return None
