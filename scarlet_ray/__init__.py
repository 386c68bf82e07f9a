"""scarlet-ray: SCARLet utility-based retriever training on Ray."""

__version__ = "0.1.0"
