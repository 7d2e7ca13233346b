"""Authentication and authorization: accounts, sessions, API keys, the guard layer, CSRF."""
