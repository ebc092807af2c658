"""Goodness functions and local losses, one learning objective per file."""
