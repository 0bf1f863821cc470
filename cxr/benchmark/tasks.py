"""Imports every module that registers benchmark tasks (one line each)."""
