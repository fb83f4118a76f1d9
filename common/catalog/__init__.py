"""Shared records over datasets: point entries keyed by location, as annotations, saved
searches, atlas and signatures keep them (locations), and the signature index (sigindex)."""
