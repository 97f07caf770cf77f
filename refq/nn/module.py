"""The ``Module`` base class: the seam that PTQ and QAT use to swap layers without editing models.

A module owns
    params:  dict name -> np.ndarray   trainable arrays, updated in place by optimizers
    grads:   dict name -> np.ndarray   same keys and shapes; ``backward`` *accumulates* into them
    buffers: dict name -> np.ndarray   fixed arrays (e.g. the sinusoidal table), not in state_dict
and child modules, registered automatically when assigned as attributes (``self.fc1 = Linear(...)``)
and looked up through ``self._modules`` at every call. That lookup is the seam: after
``model.set_submodule("encoder.layers.0.ff.fc1", wrapper)`` the parent's ``forward`` calls the
wrapper, and its ``backward`` calls the wrapper's ``backward``; the model code is never edited.

Contract for ``forward``/``backward`` (every layer in refq.nn follows it):
    y = m.forward(*inputs)      stores in ``m`` what the backward pass needs (the last call only)
    dx = m.backward(dy)         returns d loss / d input(s) given dy = d loss / d y, and adds
                                d loss / d param to ``m.grads[...]`` (call ``zero_grad`` per step)
A module called twice before its backward loses the first cache: every call site in a model
therefore has its own module (two attention matmuls are two ``MatMul`` modules, for instance).

Example:

>>> import numpy as np
>>> from refq.nn.linear import Linear
>>> class Two(Module):
...     def __init__(self):
...         super().__init__()
...         self.a = Linear(2, 3, rng=np.random.default_rng(0))
...         self.b = Linear(3, 1, rng=np.random.default_rng(1))
...     def forward(self, x):
...         return self.b(self.a(x))
...     def backward(self, dout):
...         return self.a.backward(self.b.backward(dout))
>>> m = Two()
>>> [name for name, _ in m.named_modules()]
['', 'a', 'b']
>>> sorted(m.state_dict())
['a.bias', 'a.weight', 'b.bias', 'b.weight']
>>> m.get_submodule("a").params["weight"].shape
(3, 2)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class Module:
    """Base class of every refq.nn layer and model (see the module docstring for the contract)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_modules", {})
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training: bool = True

    # -- child registration -------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        modules = self.__dict__.get("_modules")
        if modules is None:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning")
        if isinstance(value, Module):
            modules[name] = value
            self.__dict__.pop(name, None)
        else:
            modules.pop(name, None)
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules:
            return modules[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register a trainable array and its zero gradient; returns the array."""
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    # -- forward / backward ------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"abstract: {type(self).__name__}.forward")

    def backward(self, dout: np.ndarray) -> Any:
        raise NotImplementedError(f"abstract: {type(self).__name__}.backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- traversal ---------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted_name, module)`` for this module (name ``prefix``, ``""`` at the root)
        and every descendant, depth first in registration order (as PyTorch does)."""
        yield prefix, self
        for name, child in self._modules.items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, Module):
                yield from child.named_modules(full)
            else:  # a duck-typed replacement: a leaf
                yield full, child

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(dotted_name.param_key, array)`` for every trainable array (no copies)."""
        for mname, m in self.named_modules():
            for key, p in getattr(m, "params", {}).items():
                yield (f"{mname}.{key}" if mname else key), p

    def named_grads(self) -> Iterator[tuple[str, np.ndarray]]:
        """Like ``named_parameters`` but yields the gradient arrays (same names)."""
        for mname, m in self.named_modules():
            for key, g in getattr(m, "grads", {}).items():
                yield (f"{mname}.{key}" if mname else key), g

    def get_submodule(self, name: str) -> Module:
        """Return the descendant with dotted name ``name`` (``""`` is the module itself)."""
        if name == "":
            return self
        m: Any = self
        for part in name.split("."):
            children = getattr(m, "_modules", {})
            if part not in children:
                raise ValueError(f"no submodule named {name!r} (failed at {part!r})")
            m = children[part]
        return m

    def set_submodule(self, name: str, module: Any) -> None:
        """Replace the existing child at dotted ``name`` by ``module``.

        ``module`` must have callable ``forward`` and ``backward`` with the signatures of the
        one it replaces (subclass ``Module`` so that its params appear in ``state_dict``).
        """
        if not name:
            raise ValueError("set_submodule needs a non-empty dotted name")
        if not (
            callable(getattr(module, "forward", None))
            and callable(getattr(module, "backward", None))
        ):
            raise TypeError(f"replacement for {name!r} must have forward() and backward()")
        parent_name, _, last = name.rpartition(".")
        parent = self.get_submodule(parent_name)
        if last not in parent._modules:
            raise ValueError(f"no submodule named {name!r} to replace")
        parent._modules[last] = module

    # -- state ---------------------------------------------------------------------------------
    def zero_grad(self) -> None:
        for _, g in self.named_grads():
            g.fill(0)

    def train(self, mode: bool = True) -> Module:
        for _, m in self.named_modules():
            if isinstance(m, Module):
                object.__setattr__(m, "training", mode)
            elif hasattr(m, "train"):
                m.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain dict ``dotted_name.param_key -> copy of the array``."""
        return {k: v.copy() for k, v in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays from a plain dict into the parameters, in place (optimizers keep working).

        Values are cast to each parameter's dtype. Raises ValueError naming missing or unexpected
        keys (when ``strict``) and any shape mismatch.
        """
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise ValueError(
                f"state_dict mismatch: missing keys {missing}, unexpected keys {unexpected}"
            )
        for k, p in own.items():
            if k not in state:
                continue
            v = np.asarray(state[k])
            if v.shape != p.shape:
                raise ValueError(f"shape mismatch for {k!r}: checkpoint {v.shape}, model {p.shape}")
            if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
                raise TypeError(f"{k!r}: expected a numeric array, got dtype {v.dtype}")
            p[...] = v

    def to_dtype(self, dtype: Any) -> Module:
        """Convert every param, grad and buffer to ``dtype`` (float32 default, float64 for checks).

        Creates new arrays: build optimizers after calling this.
        """
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"to_dtype needs a floating dtype, got {dtype}")
        for _, m in self.named_modules():
            for d in ("params", "grads", "buffers"):
                arrays = getattr(m, d, None)
                if arrays is None:
                    continue
                for k in list(arrays):
                    if np.issubdtype(arrays[k].dtype, np.floating):
                        arrays[k] = arrays[k].astype(dtype)
        return self

    @property
    def dtype(self) -> np.dtype:
        """dtype of the first floating param or buffer (float32 if none)."""
        for _, m in self.named_modules():
            for d in (getattr(m, "params", {}), getattr(m, "buffers", {})):
                for v in d.values():
                    if np.issubdtype(v.dtype, np.floating):
                        return v.dtype
        return np.dtype(np.float32)

    def num_parameters(self) -> int:
        return int(sum(p.size for _, p in self.named_parameters()))

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            sub = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + ")" if len(lines) > 1 else f"{type(self).__name__}()"


class ModuleList(Module):
    """An indexable list of modules; children are named ``"0"``, ``"1"``, ...

    >>> from refq.nn.activations import ReLU
    >>> ml = ModuleList([ReLU(), ReLU()])
    >>> len(ml), [n for n, _ in ml.named_modules()]
    (2, ['', '0', '1'])
    """

    def __init__(self, modules: list[Module] | None = None) -> None:
        super().__init__()
        for m in modules or []:
            self.append(m)

    def append(self, m: Module) -> None:
        self._modules[str(len(self._modules))] = m

    def __getitem__(self, i: int) -> Module:
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for ModuleList of length {n}")
        return self._modules[str(i % n)]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))
