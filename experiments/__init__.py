"""Experiments around onchip_ff: the CLI, shipped configs, demo, plots."""
