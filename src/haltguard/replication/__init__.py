"""Redundancy: the venue's journal replicated on NATS JetStream, a hot standby, failover.

The primary publishes each group-commit batch to a JetStream stream with the expected last
sequence (fencing) and acknowledges only once the local fsync and the stream's ack are both
back; standbys follow the stream into their own journal and venue; a leader lease in a
JetStream key-value bucket says who may try to be primary. ``docs/replication.md`` says how
to run it and see it work.
"""
