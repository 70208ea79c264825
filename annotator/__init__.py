"""annotator: multi-user image annotation that stays fast and correct when a whole workshop clicks at once."""
