"""The error a request can cause: an HTTP status and one sentence."""

__all__ = ['ServeError']


class ServeError(Exception):
    """A request the service refuses: ``status`` (4xx; 503 while an encoder is missing; 500 for a
    catalogue image too large to be decoded under the service's limit) and
    ``message``, one sentence, answered as ``{"error": message}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = int(status), str(message)
