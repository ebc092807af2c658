"""Sweep runner: expand a sweep file into runs keyed by config hash, run them in worker processes
(local or Ray) and keep every result in one SQLite store (`onchip-ff sweep`, `onchip-ff results`).

Modules: sweep (file parsing, run expansion, config hashing), store (the SQLite results store),
worker (one run in a worker process), executors (local processes, Ray), scheduler (claim, submit,
collect, heartbeat, Ctrl-C), export (table/CSV with filters), commands (the two CLI subcommands).
"""
