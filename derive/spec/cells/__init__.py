"""The bundled cells: one TOML spec per notation, read by :mod:`derive.spec.cell` (data, never code)."""
