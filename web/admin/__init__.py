"""Admin pages: users, API keys, audit log, sessions; and the signed-in user's account page."""
