"""The speech recipe: `train.py` (the script) and its YAML defaults."""
