"""Messaging building blocks shared by the services: topology, codecs, runtime."""
