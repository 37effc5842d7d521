"""Local development infrastructure: embedded PostgreSQL and Redis, and the process supervisor
behind `make run`. Used by the `billing run` command (commands/stack.py) and the tests."""
