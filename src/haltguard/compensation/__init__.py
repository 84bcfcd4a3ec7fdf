"""Compensation: runs computed from the journal under published policies, approved by two
operators, paid into the venue exactly once, and explained to each customer."""
