"""Shared domain: models, database session, image validation and matching, used by web and workers."""
