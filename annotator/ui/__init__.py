"""Gradio views and the HTTP server; event wiring only, rules live in the service."""
