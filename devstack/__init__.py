"""Local development infrastructure: embedded PostgreSQL and Redis, and the process supervisor
behind `make run`. Used only by the composition root (cli.py) and the tests."""
