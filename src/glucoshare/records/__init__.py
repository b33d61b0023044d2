"""Records: the canonical timeline (every reading, dose, meal and device event) and the uploads it came from."""
