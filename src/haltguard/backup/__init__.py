"""Backups that are proven to restore: the venue, the operations database, configuration."""
