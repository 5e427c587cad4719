"""The skeleton every background process starts through.

``process`` runs one service until SIGTERM/SIGINT (settings, logging, health,
signals, exit codes); ``backoff`` and ``broker`` are the one way to wait for a
server that is away; ``consumer`` fits the consumer runtime into the skeleton.
"""
