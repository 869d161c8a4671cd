"""Hugging Face models and text tasks: loading a `save_pretrained` directory offline, reading
and tokenising text splits, the adapter the engine trains through, and the `model/` artifact.
"""
