"""Users (stored in each database file), login, logout and login re-binding on a switch."""
