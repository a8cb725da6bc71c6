"""The `palimpsest` command: one module per command group; `python -m studio.cli` runs it too."""
