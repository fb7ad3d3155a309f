"""Search quality: searched cells against random cells of the same space, or looked up in a tabular benchmark (NAS-Bench-201)."""
