"""The answer path shared by the web app and model building: the task Service and prompt rendering."""
