"""Mail to SMS: intake addresses, sender authorization, the SMTP listener and the intake policy."""
