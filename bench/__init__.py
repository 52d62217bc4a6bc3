"""Benchmarks of the face engine on public datasets (run as `python -m bench.<name>`)."""
