"""Drills: each of the manual's chapter 1 interruptions rehearsed end to end on a system."""
