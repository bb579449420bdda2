"""``entragate why``: the analysis (pure) and what it reads (docs/why.md)."""
