"""`/v1/customers`: create, retrieve, list, search."""

from __future__ import annotations

from collections.abc import Mapping

from .. import shapes
from ..operations import JSON, Operation
from ..pagination import PAGINATION_PARAMS, cursor_page, search_page
from ..params import Reader
from ..search import parse_query
from ..store import Store


def create_customer(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("email", "name", "metadata", "expand")
    customer = store.create_customer(
        email=p.str_or_none("email"),
        name=p.str_or_none("name"),
        metadata=p.metadata_or_none() or {},
    )
    return shapes.customer(customer)


def retrieve_customer(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("expand")
    return shapes.customer(store.customer(path["id"]))


def list_customers(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("email", "expand", "include", *PAGINATION_PARAMS)
    customers = store.list_customers(email=p.str_or_none("email"))
    page, has_more = cursor_page(customers, lambda c: c.id, p, kind="customer")
    return shapes.list_object(
        "/v1/customers",
        [shapes.customer(c) for c in page],
        has_more=has_more,
        total=len(customers) if p.has("include") else None,
    )


def search_customers(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("query", "limit", "page", "expand")
    query = parse_query(p.required_str("query"))
    hits = [c for c in store.searchable_customers() if query.matches(c.metadata)]
    page, next_page = search_page(hits, p)
    return shapes.search_result(
        "/v1/customers/search", [shapes.customer(c) for c in page], next_page=next_page
    )


OPERATIONS = (
    Operation("POST", "/v1/customers", create_customer),
    Operation("GET", "/v1/customers", list_customers),
    Operation("GET", "/v1/customers/search", search_customers),
    Operation("GET", "/v1/customers/{id}", retrieve_customer),
)
