"""Sensors shared by every pipeline."""
