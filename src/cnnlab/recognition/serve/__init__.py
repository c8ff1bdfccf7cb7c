"""The web page and HTTP API: ``create_app(model)`` builds it, ``run_server(path)`` serves it with uvicorn."""

from .app import create_app, run_server
from .recognize import Recognizer

__all__ = ["create_app", "run_server", "Recognizer"]
