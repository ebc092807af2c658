"""onchip-ff: forward-only learning rules on modelled in-memory-computing hardware."""

__version__ = "0.1.0"
