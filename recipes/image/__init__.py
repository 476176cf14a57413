"""The image recipe: `train.py` (the script) and its YAML defaults."""
