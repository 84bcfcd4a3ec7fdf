"""Who an interruption affected, computed from the venue's journal: the venue as it stood at
any seq or time (:mod:`haltguard.impact.state`) and the accounts, refused orders and
uncancellable orders of a window (:mod:`haltguard.impact.analysis`)."""
