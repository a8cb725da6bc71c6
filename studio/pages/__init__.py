"""The studio pages: one module per page, each with build(ctx) (see studio.app)."""
