"""Server-Sent Events: the in-process hub and the stream generators."""
