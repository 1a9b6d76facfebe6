"""The web app: task service (tasks + runtime), Gradio UI, and (later) the feedback store."""
