"""The whole system as ``haltguard serve`` runs it.

``config`` reads and checks the configuration file (TOML), the environment and the command
line into one :class:`ServeConfig`; ``first_admin`` creates the first operator on a fresh
database; ``system`` assembles the venue, its HTTP API and the operations service into one
ASGI app on one port.
"""
