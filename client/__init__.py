"""Command-line clients of the API."""
