"""The bodies of `billing` commands, one module per group; `cli.py` is the table that names them.
Each command asks `bootstrap` for what it needs and calls one domain or devstack function."""
