"""The built-in sample set, written for this project: query + reference pairs (samples.jsonl).

Shipped inside the wheel as package data and located through importlib.resources, so an
installed `palimpsest app` finds it as a checkout does."""
from importlib.resources import files
from pathlib import Path

SAMPLES = Path(str(files(__name__) / "samples.jsonl"))  # one JSON object a line: id, query, reference, ...
