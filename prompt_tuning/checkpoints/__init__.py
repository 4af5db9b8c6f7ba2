"""Checkpoints: the frozen backbone in (T5X, Hugging Face), the trainable state and prompt out."""
