"""gluon-dml: deep metric learning on MXNet/Gluon."""
__version__ = "0.1.0"
