"""Telling customers: subscribers (email with double opt-in, webhooks, social channels), the
notices the status page publishes, and the durable outbox that delivers each notice once."""
