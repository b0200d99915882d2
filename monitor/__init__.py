"""snowmon: keeps a fleet of ServiceNow OAuth connections alive and watches their health."""

__version__ = "0.1.0"
