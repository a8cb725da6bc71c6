"""Training: the chat export turned into tokenized examples, and the SFT backend."""
