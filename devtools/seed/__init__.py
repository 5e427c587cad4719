"""Seed data at scale: users, events with a long tail of attendees, RSVPs and their history."""
