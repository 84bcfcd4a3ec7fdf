"""Operator security (manual chapter 3.2): accounts, second factor, roles, audit chain."""
