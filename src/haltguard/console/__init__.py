"""The operator console: the incident response in a browser, at ``/console``."""
