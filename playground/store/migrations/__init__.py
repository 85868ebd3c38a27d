"""Alembic's script folder for the store (env.py and versions/): a package so it ships with the code."""
