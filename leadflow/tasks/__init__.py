"""Rep tasks: calls, emails, meetings and to-dos on leads, with the rep inbox."""
