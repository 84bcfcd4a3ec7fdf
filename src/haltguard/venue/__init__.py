"""The venue: a deterministic matching engine and account ledger with market states.

Pure: no clock, no randomness, no I/O. Time arrives as the ``ts`` the sequencer stamps on
each command, so replaying the journal reproduces every event and the state hash exactly.
The venue imports nothing from the rest of haltguard.
"""
