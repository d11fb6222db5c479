"""Rehearsing a move to another deployment: replaying logged requests against it (`replay`) and
comparing its answers with the ones clients got (`compare`, `report`)."""
