"""Tasks: data, heads, decoding and metrics per task kind, and the synthetic speech corpus."""
