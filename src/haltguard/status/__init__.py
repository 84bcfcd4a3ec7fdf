"""Telling customers (manual 2.3 and 4.2): the public status page, its Statuspage-compatible
JSON API and feeds, public incident updates and maintenance, and the update cadence."""
