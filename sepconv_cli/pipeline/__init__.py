"""Each command's work (analyze, convert, check, verify, ...): no printing, no exit codes."""
