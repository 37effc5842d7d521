"""Print the schema as SDL: `python -m gql.export_schema > schema.graphql`."""

from __future__ import annotations

from gql.schema import schema


def sdl() -> str:
    return schema.as_str() + "\n"


if __name__ == "__main__":
    print(sdl(), end="")
