"""The quantizer service."""
