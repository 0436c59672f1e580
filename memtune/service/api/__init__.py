"""The HTTP API: routes over ``service.services``."""
