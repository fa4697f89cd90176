"""WSGI entry point: ``gunicorn wsgi:app``. Configuration comes from the environment."""

from vault import create_app

app = create_app()
