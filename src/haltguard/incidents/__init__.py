"""Incident command (manual chapter 2): incidents, their timeline, runbooks and the protective
actions taken from them."""
