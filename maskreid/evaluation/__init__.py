"""Evaluation: features of a test split, distances, CMC/mAP/mINP under the standard protocol, re-ranking, and
the one scoring sequence every caller goes through (scoring.py)."""
