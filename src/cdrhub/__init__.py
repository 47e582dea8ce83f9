"""cdrhub: catch every NXCC call-log push, keep it safely, and make it useful."""

__version__ = "0.1.0"
