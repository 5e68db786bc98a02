"""The synthetic speech corpus: English text spoken by Debian's speech engines, split by voice."""
