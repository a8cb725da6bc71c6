"""Palimpsest studio: the Gradio app and the `palimpsest` command. Renders the engine; no algorithm here."""
