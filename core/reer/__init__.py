"""REER, reverse-engineered reasoning: config, search, state rebuilt from events, stored jobs."""
