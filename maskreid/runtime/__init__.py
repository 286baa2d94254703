"""Where the code runs: device choice and seeding, training precision, and the provenance recorded with results."""
