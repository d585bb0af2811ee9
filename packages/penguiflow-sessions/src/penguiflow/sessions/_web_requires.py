"""The ``web`` extra's import check, with the install line in the message."""

from __future__ import annotations

import importlib

__all__ = ["require_web_extra"]


def require_web_extra() -> None:
    """Import starlette and sse-starlette, or fail saying what to install.

    Raises:
        ImportError: one of them is missing; the message says
            ``pip install "penguiflow-sessions[web]"``.
    """
    for module in ("starlette", "sse_starlette"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(
                f"penguiflow.sessions.web needs {module.replace('_', '-')}: "
                'pip install "penguiflow-sessions[web]"'
            ) from exc
