"""The package's exceptions. The native module raises these by name (python/src/errors.rs)."""


class NewtonWgpuError(Exception):
    """Base class of every error newton_wgpu raises (files that cannot be read or written
    raise OSError)."""


class SettingsError(NewtonWgpuError, ValueError):
    """A setting out of range or unknown: an option, the optimiser, the loss, the network."""


class DataError(NewtonWgpuError, ValueError):
    """Data that cannot be trained on or scored: wrong shapes, labels out of range, values
    that are not finite, a bad data file."""


class ModelError(NewtonWgpuError, ValueError):
    """A model file that is not one, holds another architecture, or was changed since it was
    written (its checksums do not match)."""


class GpuError(NewtonWgpuError, RuntimeError):
    """No adapter, or the device failed."""


class DivergedError(NewtonWgpuError, ArithmeticError):
    """f or its gradient stopped being finite; θ is left as the last good iteration left it."""

    def __init__(self, message, iteration, f, grad_norm):
        super().__init__(message)
        self.iteration = iteration
        self.f = f
        self.grad_norm = grad_norm
