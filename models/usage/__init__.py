"""Usage: metered events in (`ingest`), aggregated into each organization's draft through typed
staging tables (`staging`), checked and replayed (`verify`), and read back as the month so far
(`upcoming`)."""
