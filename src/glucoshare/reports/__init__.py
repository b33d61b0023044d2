"""Reports people read, print and send: view models built on the analytics, rendered as HTML and PDF."""
