"""The ``haltguard`` command line: thin Typer entry points over each domain's service."""
