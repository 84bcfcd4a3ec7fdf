"""haltguard: keeps a crypto-asset exchange safe through trading interruptions."""

__version__ = "0.1.0"
