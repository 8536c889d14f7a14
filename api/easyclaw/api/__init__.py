"""The REST API: a thin HTTP layer over easyclaw.core."""

from easyclaw.api.app import create_app

__all__ = ["create_app"]
