"""The live console: pages, their partials and their SSE streams."""
