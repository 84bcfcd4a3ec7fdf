"""Customer support through an interruption: help centre, tickets, replies, chat, staffing."""
