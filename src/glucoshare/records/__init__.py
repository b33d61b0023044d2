"""Records: the canonical timeline (readings, doses, meals, device events) and its uploads."""
