"""The operations service over HTTP: the app factory and the plumbing every domain's routes
share (sessions, errors, pagination, the clock and the venue connection)."""
