"""Static assets shipped with Palimpsest: prompt templates, CSS, the logo. No code."""
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
