"""Developer tooling behind the Makefile: service checks, local set-up, `make run`."""
