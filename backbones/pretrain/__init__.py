"""Pretraining recipes for the built-in backbones (tiny-whisper, tiny-speecht5), run on the synthetic corpus."""
