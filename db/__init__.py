"""SQLite storage: one serialized writer, readers, versioned migrations, named queries."""
