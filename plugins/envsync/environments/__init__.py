"""Seeded and derived environments: reseed and its seeds, test environments, the QA -> staging cut, and
parity (how far each environment is from prod)."""
