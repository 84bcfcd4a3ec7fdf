"""The lowest layer: basics every domain shares (time, units, network addresses).

Modules here import nothing from haltguard; everything else may import them. A basic lives
here once, so the venue, the gateway and the operations service cannot drift apart on it.
"""
