"""Responders: who is on call, how a page escalates, and who to call for each kind of trouble.

Manual chapter 2.1 (notify the people concerned and form the team) and chapter 3.3 (an
emergency contact system). Other domains call :mod:`haltguard.responders.service` only.
"""
