"""Follow-up cadences: sequences, enrollments, email over SMTP, appointments."""
