"""The whole system as ``haltguard serve`` runs it.

``config`` reads and checks the configuration file (TOML or YAML), the environment and the
command line into one :class:`ServeConfig`; ``first_admin`` creates the first operator on a
fresh database; ``venue_process`` is the venue as a process of its own (``haltguard venue
run``), ``supervisor`` keeps that process running and ``forwarding`` carries the public
``/v1`` API to it; ``operations`` is the composition root of the operations service
(``create_app``); ``system`` assembles the venue, the operations service, detection, the
status loop and the notice outbox into one ASGI app on one port.
"""
