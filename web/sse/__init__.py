"""sse package."""
