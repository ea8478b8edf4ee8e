"""The one process that holds the IB sockets (clients 1 and 2)."""
