"""Serving: the Gradio web app and the REST API (planned; see the project's issues)."""
