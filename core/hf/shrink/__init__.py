"""Width and depth pruning of Hugging Face transformers into smaller models `from_pretrained`
loads: the families supported, activation importances, the sizes that meet a parameter target,
and the rebuilt model with its rewritten config."""
