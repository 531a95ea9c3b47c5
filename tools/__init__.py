"""Repository tools run by make (lint steps)."""
