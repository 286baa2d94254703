"""What the masks do: measures of M's masks on test images (measures.py) and the diagnostics of why hiding may
hurt (diagnostics.py)."""
