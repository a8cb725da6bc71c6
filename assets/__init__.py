"""Static assets shipped with Palimpsest: prompt templates, CSS, the logo. No code.

Located through importlib.resources, so an installed wheel finds them as a checkout does."""
from importlib.resources import files
from pathlib import Path

ASSETS_DIR = Path(str(files(__name__)))  # installed wheels are unpacked: a real folder
CSS_PATH = ASSETS_DIR / "studio.css"
KEYS_JS_PATH = ASSETS_DIR / "keys.js"  # keyboard shortcuts of one-record pages, put in the page head
HEAD_CSS_PATH = ASSETS_DIR / "head.css"  # page-level rules studio.css cannot reach, put in the page head
PROMPTS_DIR = ASSETS_DIR / "prompts"
