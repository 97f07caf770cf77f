"""Threading policy (placeholder, completed below)."""

import numba


def get_num_threads() -> int:
    """Threads the int8 kernels use: Numba's current setting."""
    return numba.get_num_threads()
