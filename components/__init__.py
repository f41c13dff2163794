"""Gradio components of the Avatar Assistant UI (the three.js avatar)."""
