"""Adapter methods (LoRA, AdaLoRA, prefix, bottleneck), their registry and the hot-swap bank."""
