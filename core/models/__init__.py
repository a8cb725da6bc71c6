"""Language models: the LM protocol, its backends (local HF, OpenAI-compatible servers) and scoring."""
