"""The HTTP plumbing every domain's routes share (the operations context, sessions, errors,
pagination, bounds, body limits, metrics); it imports no domain. The operations app itself
is built by the composition root, ``haltguard.app.operations``."""
