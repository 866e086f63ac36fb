"""The programs JAX compiles, as the tests count them."""

import contextlib
import logging

import jax


class _Compilations(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.names = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Compiling "):
            self.names.append(message.split()[1])


@contextlib.contextmanager
def compilations():
    """The names of the programs compiled inside the block (``jit(stage)``, …), in order."""
    handler = _Compilations()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield handler.names
    finally:
        logger.removeHandler(handler)
