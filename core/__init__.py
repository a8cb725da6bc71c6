"""Palimpsest engine: models, scoring, searches, store. Knows nothing of Gradio, Plotly or HTML."""
