"""Avatar Assistant's pipeline: stages, backends and the turn orchestration, importable without Gradio."""
