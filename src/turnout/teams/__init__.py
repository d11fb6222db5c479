"""Teams, users and their memberships."""
