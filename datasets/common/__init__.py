"""Code shared by the dataset plugins (not a plugin itself: sub-folders are never scanned)."""
