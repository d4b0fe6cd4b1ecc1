"""Writes. Each service is a transaction with keyword-only arguments, named <entity>_<action>."""
