"""Token scopes, enforced by the database and by every field: a metering token posts usage for
every organization and reads nothing, through any query or mutation of the schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
    build_client_schema,
    get_introspection_query,
    get_named_type,
    is_composite_type,
)
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

import cli
from models import organizations, tables
from models.errors import InvalidValue
from models.tables import TokenScope
from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token

# A made-up value per scalar, of the right shape, so that every call passes validation and
# reaches the field's permission. A new scalar without one here fails the walk loudly.
SCALAR_SAMPLES: dict[str, Any] = {
    "ID": "inv_madeup0000000000",
    "String": "made-up",
    "Int": 1,
    "Float": 1.5,
    "Boolean": True,
    "BigInt": "1",
    "Date": "2026-01-01",
    "DateTime": "2026-01-01T00:00:00+00:00",
    "Decimal": "1.5",
    "JSON": {},
}
ALLOWED_TO_METERING = {"recordUsage"}


def sample(t: GraphQLInputType) -> Any:
    """A minimal value of input type `t`: required fields only, lists of one."""
    if isinstance(t, GraphQLNonNull):
        return sample(t.of_type)
    if isinstance(t, GraphQLList):
        return [sample(t.of_type)]
    if isinstance(t, GraphQLEnumType):
        return next(iter(t.values))
    if isinstance(t, GraphQLInputObjectType):
        return {
            name: sample(f.type)
            for name, f in t.fields.items()
            if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
        }
    assert isinstance(t, GraphQLScalarType)
    assert t.name in SCALAR_SAMPLES, f"add a made-up value for scalar {t.name} to SCALAR_SAMPLES"
    return SCALAR_SAMPLES[t.name]


def calls(api: Api, token: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(operation, field, document, variables) for every root field, from introspection."""
    introspection = api.data(get_introspection_query(), token)
    schema = build_client_schema(introspection)  # type: ignore[arg-type]
    out = []
    for operation, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        assert isinstance(root, GraphQLObjectType)
        for name, f in root.fields.items():
            args = {a: v for a, v in f.args.items() if isinstance(v.type, GraphQLNonNull)}
            declared = ", ".join(f"${a}: {v.type}" for a, v in args.items())
            passed = ", ".join(f"{a}: ${a}" for a in args)
            selection = " { __typename }" if is_composite_type(get_named_type(f.type)) else ""
            document = (
                f"{operation}{f'({declared})' if declared else ''} "
                f"{{ {name}{f'({passed})' if passed else ''}{selection} }}"
            )
            out.append((operation, name, document, {a: sample(v.type) for a, v in args.items()}))
    return out


@pytest.fixture
def tokens(committed: sessionmaker[Session]) -> dict[str, str]:
    with committed() as s, s.begin():
        acme = make_org(s, slug="acme")
        make_invoice(s, acme, status="open", lines=2)  # something a reader could see
        metering, _ = organizations.create_token(
            s, scope=TokenScope.METERING, organization=None, name="pipeline"
        )
        return {"admin": make_token(s, None, admin=True), "metering": metering}


def test_the_database_refuses_a_metering_token_bound_to_an_organization(
    committed: sessionmaker[Session],
) -> None:
    with committed() as s, s.begin():
        org_id = make_org(s, slug="bound").id
    raw = sa.text(
        "INSERT INTO api_tokens (token_sha256, scope, organization_id, name) "
        "VALUES (repeat('a', 64), 'metering', :o, 'raw')"
    )
    with (
        pytest.raises(sa.exc.IntegrityError, match="metering_has_no_org"),
        committed() as s,
        s.begin(),
    ):
        s.execute(raw, {"o": org_id})
    with committed() as s, s.begin():
        org = s.get_one(tables.Organization, org_id)
        with pytest.raises(InvalidValue, match="metering token"):
            organizations.create_token(s, scope=TokenScope.METERING, organization=org, name="x")


def test_a_metering_token_is_refused_by_every_query_and_mutation(
    api: Api, tokens: dict[str, str]
) -> None:
    walked = calls(api, tokens["admin"])
    names = {name for _, name, _, _ in walked}
    assert {"invoices", "viewer", "billingRun", "resyncInvoice", "setSpendAlert"} <= names
    assert len(walked) >= 19
    for operation, name, document, variables in walked:
        if name in ALLOWED_TO_METERING:
            continue
        body = api.gql(document, tokens["metering"], **variables)
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
        assert codes == ["FORBIDDEN"], (name, document, variables, body)
        message = body["errors"][0]["message"]
        assert f"this {operation}" in message, (name, message)
        assert body["data"] is None or body["data"].get(name) is None, (name, body)


def test_a_metering_token_still_posts_usage(
    api: Api, tokens: dict[str, str], committed: sessionmaker[Session]
) -> None:
    from tests.test_usage import seed_prices

    with committed() as s, s.begin():
        seed_prices(s, at=datetime.now(UTC) - timedelta(days=60))
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    event = {"id": "m1", "organizationSlug": "acme", "product": "machines-shared-cpu",
             "quantity": "60", "occurredAt": at, "app": "web", "region": "ams"}  # fmt: skip
    response = api.client.post(
        "/v1/usage",
        json={"events": [event]},
        headers={"Authorization": f"Bearer {tokens['metering']}"},
    )
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    data = api.data(
        "mutation($input: RecordUsageInput!) { recordUsage(input: $input) { accepted } }",
        tokens["metering"],
        input={"events": [{**event, "id": "m2"}]},
    )
    assert data["recordUsage"]["accepted"] == 1


def test_token_commands_create_list_and_revoke(
    api: Api,
    committed: sessionmaker[Session],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with committed() as s, s.begin():
        make_org(s, slug="acme")
        make_org(s, slug="other")
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, metering, _ = run("token", "create", "--metering", "--name", "pipeline")
    assert code == 0 and metering.strip().startswith("bt_")
    code, _, err = run("token", "create", "--metering", "--org", "acme")
    assert code == 2 and "metering token" in err
    code, member, _ = run("token", "create", "--org", "acme", "--name", "acme ops")
    assert code == 0
    run("token", "create", "--org", "other")
    code, listing, _ = run("token", "list")
    assert code == 0 and "pipeline" in listing and "acme ops" in listing and "metering" in listing
    assert metering.strip() not in listing  # only the hash is stored, nothing to print
    code, acme_only, _ = run("token", "list", "--org", "acme")
    assert "acme ops" in acme_only and "pipeline" not in acme_only and "other" not in acme_only

    line = next(ln for ln in acme_only.splitlines() if "acme ops" in ln)
    token_id = line.split()[0]
    code, out, _ = run("token", "revoke", token_id)
    assert code == 0 and "revoked" in out
    body = api.gql("{ viewer { scope } }", member.strip())
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    code, _, err = run("token", "revoke", "999999999")
    assert code == 2 and "no token" in err
    code, listing, _ = run("token", "list")
    assert "revoked" in next(ln for ln in listing.splitlines() if "acme ops" in ln)


def test_forbidden_messages_say_query_or_mutation(
    api: Api, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        member = make_token(s, make_org(s, slug="acme"))
    body = api.gql('{ billingRun(period: "2026-11") { period } }', member)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["errors"][0]["message"] == "this query needs a platform admin token"
    body = api.gql(
        "mutation($input: SetPriceInput!) { setPrice(input: $input) { __typename } }",
        member,
        input={"product": "egress", "unit": "GB", "currency": "usd", "unitPrice": "1.5"},
    )
    assert body["errors"][0]["message"] == "this mutation needs a platform admin token"
