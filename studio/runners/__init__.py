"""Background runs for the studio: REER, R2 and training, one runner per app each."""
