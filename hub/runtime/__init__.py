"""The running process (`smshub run`): one asyncio process serving HTTP and SMTP and running the
dispatcher, workers and scheduler; the operations port (/livez, /readyz, /metrics), readiness,
log set-up and giving freed memory back. It imports the composition root, not the reverse.
"""
