"""Background runs for the studio: REER and R2 (one runner per app each, on the shared base
studio.runners.base) and training (a separate process, studio.runners.train)."""
