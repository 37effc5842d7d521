"""The OpenAPI 3.1 description of the two plain-HTTP ways in: POST /v1/usage and POST
/webhooks/stripe. Built from the code's own constants (limits, fields, error codes), served at
/openapi.json and committed as openapi.json at the repository's root; the suite checks that the
committed file is what this module builds and runs schemathesis against the served one."""

from __future__ import annotations

import json
from typing import Any

from models.errors import ErrorCode, meaning
from models.usage import ingest

# The codes of a per-event refusal: every domain code a rejected event can carry.
EVENT_CODES = sorted(
    {
        ErrorCode.INVALID_VALUE,
        ErrorCode.VALUE_OUT_OF_RANGE,
        ErrorCode.TOO_MANY_DECIMALS,
        ErrorCode.NEGATIVE_QUANTITY,
        ErrorCode.UNKNOWN_ORGANIZATION,
        ErrorCode.UNKNOWN_PRODUCT,
        ErrorCode.OUT_OF_WINDOW,
        ErrorCode.IDEMPOTENCY_CONFLICT,
        ErrorCode.PERIOD_CLOSED,
        ErrorCode.NOT_RECORDED,
    }
)
# The codes of an answer about the request as a whole, by status (gql/usage/http.py).
REQUEST_CODES = {
    "400": ["MALFORMED_BODY"],
    "401": ["UNAUTHENTICATED"],
    "403": ["FORBIDDEN"],
    "413": ["TOO_MANY_EVENTS", "BODY_TOO_LARGE"],
    "415": ["UNSUPPORTED_MEDIA_TYPE"],
    "500": ["INTERNAL_ERROR"],
    "503": ["DATABASE_UNAVAILABLE", "SERVICE_UNAVAILABLE"],
}
_WHY = {
    "400": 'The body is not UTF-8 JSON of the form {"events": [...]}.',
    "401": "No live API token in Authorization: Bearer.",
    "403": "The token is neither an admin nor a metering token.",
    "413": f"More than {ingest.MAX_EVENTS_PER_CALL:,} events, or a body over 16 MB.",
    "415": "The Content-Type is not application/json.",
    "500": "A bug; nothing was recorded. Quote the request id to support.",
    "503": "PostgreSQL cannot be reached (DATABASE_UNAVAILABLE) or is busy "
    "(SERVICE_UNAVAILABLE); nothing was recorded. Send the same batch again after Retry-After "
    "seconds: its event ids make the resend count once.",
}


def _text(max_length: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "description": description}


def build() -> dict[str, Any]:
    error = {
        "type": "object",
        "required": ["code", "message", "requestId"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "requestId": {"type": "string", "description": "Also in the X-Request-Id header."},
        },
    }
    event = {
        "type": "object",
        "required": ["id", "organizationSlug", "product", "quantity", "occurredAt"],
        "description": "One usage event. Unknown fields refuse the event (INVALID_VALUE). Text "
        "fields are stored exactly: no NUL, no lone surrogate, no leading or trailing "
        "whitespace (refused, never stripped).",
        "properties": {
            "id": _text(
                ingest.MAX_ID,
                "Unique per organization, forever: a resend with the "
                "same payload is a duplicate, with another payload a conflict.",
            ),
            "organizationSlug": _text(ingest.MAX_TEXT, "The organization billed."),
            "product": _text(
                ingest.MAX_TEXT,
                "A product with a price in the organization's currency at occurredAt.",
            ),
            "quantity": {
                "description": "A non-negative decimal with at most 9 places and 11 integer "
                'digits, as a string ("12.5") or a JSON number (read exactly, never as a '
                "binary float).",
                "oneOf": [
                    {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                    {"type": "number", "minimum": 0},
                ],
            },
            "occurredAt": {
                "type": "string",
                "format": "date-time",
                "description": "ISO 8601 with a time zone; at most 35 days ago, 5 minutes ahead.",
            },
            "app": {"type": ["string", "null"], "maxLength": ingest.MAX_TEXT},
            "region": {"type": ["string", "null"], "maxLength": ingest.MAX_TEXT},
            "metadata": {
                "type": ["object", "null"],
                "description": f"At most {ingest.MAX_METADATA_KEYS} keys and "
                f"{ingest.MAX_METADATA_BYTES} bytes, nested at most "
                f"{ingest.MAX_METADATA_DEPTH} levels; stored as sent (numbers stay numbers with "
                "their decimal text). NaN, Infinity, NUL and lone surrogates refuse the event.",
            },
        },
    }
    rejected = {
        "type": "object",
        "required": ["index", "id", "code", "message"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "id": {"type": ["string", "null"]},
            "code": {
                "type": "string",
                "enum": [str(c) for c in EVENT_CODES],
                "description": " ".join(f"{c}: {meaning(c)}" for c in EVENT_CODES),
            },
            "message": {"type": "string"},
        },
    }
    usage_responses: dict[str, Any] = {
        "200": {
            "description": "Each event accepted, a duplicate, or rejected with its code; the "
            "accepted ones are on their drafts.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["accepted", "duplicates", "rejected"],
                        "properties": {
                            "accepted": {"type": "integer", "minimum": 0},
                            "duplicates": {"type": "integer", "minimum": 0},
                            "rejected": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Rejected"},
                            },
                        },
                    }
                }
            },
        }
    }
    for status, codes in REQUEST_CODES.items():
        body = {
            "allOf": [
                {"$ref": "#/components/schemas/Error"},
                {"properties": {"code": {"enum": codes}}},
            ]
        }
        usage_responses[status] = {
            "description": _WHY[status],
            "content": {"application/json": {"schema": body}},
        }
        if status == "503":
            usage_responses[status]["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}
            }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Billing: usage in, Stripe webhooks in",
            "version": "1",
            "description": "The plain-HTTP endpoints; everything else is GraphQL at /graphql.",
        },
        "paths": {
            "/v1/usage": {
                "post": {
                    "operationId": "postUsage",
                    "summary": f"Record up to {ingest.MAX_EVENTS_PER_CALL:,} usage events",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["events"],
                                    "properties": {
                                        "events": {
                                            "type": "array",
                                            "maxItems": ingest.MAX_EVENTS_PER_CALL,
                                            "items": {"$ref": "#/components/schemas/UsageEvent"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": usage_responses,
                }
            },
            "/webhooks/stripe": {
                "post": {
                    "operationId": "stripeWebhook",
                    "summary": "A Stripe event, signed with a Stripe-Signature header",
                    "parameters": [
                        {
                            "name": "Stripe-Signature",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "Verified and stored once; applied when it concerns "
                            "an invoice we know.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["received", "outcome"],
                                        "properties": {
                                            "received": {"const": True},
                                            "outcome": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": {
                            "description": "Signature missing, wrong or too old; or a body "
                            "that is not a Stripe event. Stripe retries.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["error"],
                                        "properties": {"error": {"type": "string"}},
                                    }
                                }
                            },
                        },
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin or metering API token.",
                }
            },
            "schemas": {"Error": error, "UsageEvent": event, "Rejected": rejected},
        },
    }


def text() -> str:
    """The committed file's exact text."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
