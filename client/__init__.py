"""`bill`: a terminal client of the billing GraphQL API (docs/client.md).

It talks only to the API over HTTP (BILLING_API, BILLING_TOKEN) and imports nothing of the
server: no models, gql or sync. `api` sends GraphQL documents, `commands` asks and shapes the
answers, `render` prints them with rich (or as JSON with --json), `cli` is the command table.
"""
