"""howto: content-addressed scientific data."""
