"""graphql-schema-linter over the committed schema.graphql, with every default rule but the four
sorting ones (tests/graphql_http_audit/.graphql-schema-linterrc): fields, arguments, enum values
and types all described, names cased, Relay connections and PageInfo to the spec. The SDL keeps
the order of the code, which groups fields by meaning; sorting it would only scatter them."""

from __future__ import annotations

import json
import subprocess

from tests.node_tools import NODE_DIR, npm_ci

SORTING_RULES = {
    "enum-values-sorted-alphabetically",
    "input-object-fields-sorted-alphabetically",
    "interface-fields-sorted-alphabetically",
    "type-fields-sorted-alphabetically",
}


def test_the_committed_config_leaves_out_only_the_sorting_rules() -> None:
    npm_ci()
    every = {
        p.stem.replace("_", "-")
        for p in (NODE_DIR / "node_modules/graphql-schema-linter/lib/rules").glob("*.js")
    }
    config = json.loads((NODE_DIR / ".graphql-schema-linterrc").read_text())
    assert every - set(config["rules"]) == SORTING_RULES


def test_the_schema_passes_graphql_schema_linter() -> None:
    npm_ci()
    run = subprocess.run(
        ["node_modules/.bin/graphql-schema-linter", "--format", "compact", "../../schema.graphql"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_an_enum_value_without_a_description_stops_the_schema() -> None:
    from enum import Enum

    import pytest

    from gql.core.enums import publish

    class Colour(Enum):
        RED = "red"
        BLUE = "blue"

    with pytest.raises(TypeError, match="Colour: no description for BLUE"):
        publish(Colour, name="Colour", description="A colour.", values={Colour.RED: "Red."})


def test_every_user_error_code_has_a_meaning() -> None:
    from models.errors import ErrorCode, meaning

    assert all(meaning(code) for code in ErrorCode)
