"""Pure data and maths: records, units, costs, decomposition, budgets, weights (numpy at most; no framework, no I/O)."""
