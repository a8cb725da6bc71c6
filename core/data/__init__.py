"""Data in and out: reading input files, importing into the store, curation, export."""
