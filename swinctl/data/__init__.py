"""Generated demo datasets (COCO and ADE20K formats) for smoke runs and tests."""
