r"""Compiled programs kept on disk: a new process neither traces nor compiles them again.

JAX's persistent compilation cache (`_jax_cache`) saves the XLA compilation, but it is keyed by
the lowered program, so every process still traces and lowers each solve before it can look
the program up: about a second for a study's shared solve, more for a batched sweep.  This
module keeps the compiled executable itself (`jax.experimental.serialize_executable`), in the
folder ``programs`` beside JAX's, under a key that is known *before* tracing:

- what the program is: its label and everything static it closes over (models, solver,
  step limits, the device mesh), described as text;
- the loss: the text of its jaxpr at the start's shapes and dtypes, with the values of the
  constants it closes over (a data set, say);
- the shapes, dtypes and weak types of the program's array inputs;
- the environment: the hbflow source, the versions of JAX, jaxlib, diffrax, equinox and NumPy,
  the devices, the CPU's model and feature flags, ``XLA_FLAGS`` and the JAX switches that
  change what a traced program computes (float64, matmul precision, dtype promotion, the random
  number generator, the partitioner).

Anything whose description could hide a difference is not kept, and is traced and compiled in
each process as before: a loss closing over more than a MiB of arrays (each program would carry
a copy; data passed as the loss's argument is an input instead), an object whose text shows a
memory address, a class from outside hbflow, JAX, diffrax or equinox (whose code is not part of
the key), a loss with custom derivative or batching rules (`jax.custom_jvp`, `jax.custom_vjp`,
as in `jax.nn.relu`: the jaxpr names the rules but does not show them) or host callbacks, and
any run on several processes (`jax.distributed`).

Two properties of XLA's executables shape how programs are kept.  An executable that JAX has
loaded from its own persistent cache does not serialize whole (its copy fails to run), so the
programs kept here are compiled afresh and not put in JAX's cache.  And a loaded executable runs
on all devices unless told otherwise, so each file records the devices its program was compiled
for.

Files are written to a temporary name and renamed, so a reader never sees half a program; an
unreadable file is dropped and the program compiled again.  The store is on exactly when the
persistent compilation cache is (`hbflow.enable_compilation_cache`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pickle
import platform
import threading
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from ._files import cache_limit, mark_used, package_digest, trim, write_atomically

__all__ = ["set_directory", "directory", "run", "loss_key", "LossKeys", "Stored"]

#: Where programs are kept, or ``None`` when the store is off (set by `_jax_cache`).
_DIRECTORY: Path | None = None

#: Compiled programs of this process, most recently used last.
_MEMORY: OrderedDict[str, Any] = OrderedDict()
_MEMORY_SIZE = 32
_LOCK = threading.RLock()

#: A loss closing over more than this many bytes of arrays is not stored: every program would
#: carry a copy of them (pass such data as the loss's ``data`` argument instead).
MAX_CONSTANT_BYTES = 1 << 20

# Modules whose code the key covers (hbflow's source, and the versions of the others).
_KNOWN = ("hbflow", "jax", "jaxlib", "diffrax", "equinox", "numpy", "builtins", "fractions")
_SCALARS = (bool, int, float, complex, str, bytes, type(None), Fraction)
# Primitives whose behaviour the jaxpr's text does not show: custom rules (derivatives,
# batching, transposition, partitioning) name a Python function, callbacks call one.
_OPAQUE = ("custom", "callback")


def set_directory(path: Path | None) -> None:
    """Keep programs in `path` (``None``: keep none, and forget those loaded)."""
    global _DIRECTORY
    _DIRECTORY = path
    if path is None:
        with _LOCK:
            _MEMORY.clear()


def directory() -> Path | None:
    """The folder programs are kept in, or ``None`` when the store is off."""
    return _DIRECTORY


# --- the key --------------------------------------------------------------------------------------


def _environment() -> str:
    """Everything outside the program that its compiled code depends on."""
    import jax

    # JAX's switches are read at every call: a user may change one between two runs.
    switches = [f"{name}={getattr(jax.config, name, None)}" for name in _SWITCHES]
    return "\n".join([_installation(), os.environ.get("XLA_FLAGS", ""), *switches])


@functools.cache
def _installation() -> str:
    """The code, the library versions and the machine: fixed for the life of a process."""
    import jax

    versions = []
    for name in ("jax", "jaxlib", "diffrax", "equinox", "numpy"):
        try:
            versions.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}=?")
    devices = [f"{d.platform}:{d.device_kind}:{d.id}" for d in jax.devices()]
    parts = [
        package_digest(),
        *versions,
        platform.python_version(),
        platform.machine(),
        _cpu(),
        *devices,
    ]
    return "\n".join(parts)


# JAX's switches that change what a traced program computes.
_SWITCHES = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_dtype_promotion",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_use_shardy_partitioner",
)


def _cpu() -> str:
    """The CPU's model and feature flags: compiled CPU code is made for them."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor()
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    lines = {line.split(":")[0].strip(): line for line in text.splitlines() if ":" in line}
    return "\n".join(lines[w] for w in wanted if w in lines) or platform.processor()


def _qualified(kind: type) -> str | None:
    module = getattr(kind, "__module__", "") or ""
    if module.split(".")[0] not in _KNOWN:
        return None
    return f"{module}.{kind.__qualname__}"


def describe(obj: Any) -> str | None:
    """Text that determines `obj` as a static part of a program, or ``None`` if there is none.

    Pytrees are described by their node types (module and name), their static data and leaves;
    arrays by their shape, dtype and bytes; other objects only if they are plain scalars.
    """
    import jax
    import numpy as np

    out: list[str] = []

    def leaf(x: Any) -> bool:
        if isinstance(x, _SCALARS):
            out.append(repr(x))
            return True
        if isinstance(x, (np.ndarray, np.generic, jax.Array)):
            a = np.asarray(x)
            out.append(f"array{a.shape}{a.dtype}:{hashlib.sha256(a.tobytes()).hexdigest()}")
            return True
        if isinstance(x, type):
            name = _qualified(x)
            out.append(f"type:{name}")
            return name is not None
        if isinstance(x, np.dtype):
            out.append(f"dtype:{x.str}")
            return True
        if isinstance(x, jax.tree_util.PyTreeDef):
            out.append(f"treedef{x.num_leaves}")
            return node(x)
        if isinstance(x, jax.sharding.Mesh):
            out.append(f"mesh{x.axis_names}{x.device_ids.tolist()}")
            return True
        return False

    def walk(x: Any) -> bool:
        leaves, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda y: y is None)
        if treedef.num_nodes == 1 and treedef.num_leaves == 1:  # a leaf
            return leaf(x)
        return node(treedef) and all(walk(y) for y in leaves)

    def node(treedef: Any) -> bool:
        data = treedef.node_data()
        if data is None:  # a leaf
            return True
        kind, aux = data
        name = _qualified(kind)
        if name is None:
            return False
        out.append(f"<{name}")
        if aux is not None and not walk_aux(aux):
            return False
        ok = all(node(child) for child in treedef.children())
        out.append(">")
        return ok

    def walk_aux(aux: Any) -> bool:
        # Static data of a node: tuples, dicts and sentinels (equinox's `Missing`) of plain values.
        if isinstance(aux, (tuple, list)):
            out.append("(")
            ok = all(walk_aux(a) for a in aux)
            out.append(")")
            return ok
        if isinstance(aux, dict):
            return all(leaf(k) and walk_aux(v) for k, v in sorted(aux.items(), key=repr))
        if leaf(aux):
            return True
        name = _qualified(type(aux))
        text = repr(aux)
        if name is None or "0x" in text:
            return False
        out.append(f"{name}:{text}")
        return True

    ok = walk(obj)
    text = "|".join(out)
    return text if ok and "0x" not in text else None


def _opaque(jaxpr: Any) -> bool:
    """Whether a jaxpr (or one nested in it) holds a primitive its text does not determine."""
    from jax.extend import core

    for eqn in jaxpr.eqns:
        if any(word in eqn.primitive.name for word in _OPAQUE):
            return True
        for param in eqn.params.values():
            subs = param if isinstance(param, (tuple, list)) else (param,)
            for sub in subs:
                inner = getattr(sub, "jaxpr", sub)
                if isinstance(inner, core.Jaxpr) and _opaque(inner):
                    return True
    return False


def loss_key(loss: Callable, *example: Any) -> str | None:
    """The identity of `loss` at the shapes of `example`: its jaxpr's text and constants.

    ``None`` if the loss cannot be described (see the module's docstring) or not traced.
    """
    import jax
    import numpy as np

    try:
        closed = jax.make_jaxpr(loss)(*example)
    except Exception:  # noqa: BLE001 - the caller's own checks report a bad loss
        return None
    if _opaque(closed.jaxpr):
        return None
    text = str(closed.jaxpr)
    if "0x" in text:
        return None
    digest = hashlib.sha256(text.encode())
    size = 0
    for const in closed.consts:
        if not isinstance(const, (np.ndarray, np.generic, jax.Array, *_SCALARS)):
            return None
        a = np.asarray(const)
        size += a.nbytes
        if size > MAX_CONSTANT_BYTES:  # its programs would carry the data; pass it as `data`
            return None
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


class LossKeys:
    """`loss_key` of one loss, computed once per input shapes and dtypes."""

    def __init__(self, loss: Callable):
        self._loss = loss
        self._keys: dict[str, str | None] = {}

    def __call__(self, *example: Any) -> str | None:
        if _DIRECTORY is None:
            return None
        shapes = _avals(example)
        if shapes not in self._keys:
            self._keys[shapes] = loss_key(self._loss, *example)
        return self._keys[shapes]


def _avals(tree: Any) -> str:
    """The structure, shapes, dtypes and weak types (and multi-device shardings) of `tree`."""
    import jax
    import numpy as np

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    parts = [str(treedef)]
    for x in leaves:
        weak = getattr(x, "weak_type", isinstance(x, (bool, int, float, complex)))
        dtype = x.dtype if hasattr(x, "dtype") else np.result_type(x)
        parts.append(f"{np.shape(x)}{dtype}{weak}")
        sharding = getattr(x, "sharding", None)
        if sharding is not None and len(getattr(sharding, "device_set", ())) > 1:
            parts.append(str(sharding))
    return ";".join(parts)


class Stored:
    """A jitted function of one loss, ``jitted(loss_arrays, *inputs, **static)``, run by `run`.

    For the builders of `_loss_cache.PerLoss` caches: `loss` is their stand-in
    (``loss(loss_arrays, u)``), `example(loss_arrays, *inputs)` gives the arguments its key is
    taken at (``(loss_arrays, u)``, shapes and dtypes suffice), and `static` is the builder's
    own key.
    """

    def __init__(
        self, jitted: Any, label: str, loss: Callable, example: Callable, static: Any = ()
    ):
        self._jitted = jitted
        self._label = label
        self._keys = LossKeys(loss)
        self._example = example
        self._static = static

    def __call__(self, loss_arrays: Any, *inputs: Any, **kwargs: Any) -> Any:
        return run(
            self._jitted,
            (loss_arrays, *inputs),
            label=self._label,
            loss=self._keys(*self._example(loss_arrays, *inputs)),
            static=self._static,
            kwargs=kwargs,
        )


# --- running --------------------------------------------------------------------------------------


def run(
    jitted: Any,
    args: tuple,
    *,
    label: str,
    loss: str | None,
    static: Any = (),
    num_static: int = 0,
    kwargs: dict | None = None,
) -> Any:
    """``jitted(*args, **kwargs)``, through a compiled program kept on disk when possible.

    **Arguments:**

    - `jitted`: a `jax.jit`-wrapped function.
    - `args`, `kwargs`: its arguments; the first `num_static` positional ones and all keyword
      ones are static (`static_argnums`, `static_argnames`), the others are its inputs.
    - `label`: the program's name in the key.
    - `loss`: the `loss_key` of the loss the program closes over (``None``: not kept).
    - `static`: everything else the program closes over (described by `describe`).
    """
    kwargs = kwargs or {}
    folder = _DIRECTORY
    if folder is None or loss is None:
        return jitted(*args, **kwargs)
    import jax
    import jax.core

    if jax.process_count() > 1:
        return jitted(*args, **kwargs)
    text = describe((static, args[:num_static], sorted(kwargs.items())))
    if text is None:
        return jitted(*args, **kwargs)
    inputs = args[num_static:]
    leaves, in_def = jax.tree_util.tree_flatten(inputs)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):  # called inside a trace
        return jitted(*args, **kwargs)
    digest = hashlib.sha256()
    for part in (_environment(), label, loss, text, _avals(inputs)):
        digest.update(part.encode())
        digest.update(b"\0")
    key = digest.hexdigest()
    with _LOCK:
        entry = _MEMORY.get(key)
        if entry is not None:
            _MEMORY.move_to_end(key)
    if entry is None:
        path = folder / f"{key}.program"
        entry = _load(path)
        if entry is None:
            compiled, out_def, fresh = _compile(jitted, args[:num_static], in_def, leaves, kwargs)
            entry = compiled, out_def
            if fresh:
                _store(path, compiled, out_def)
        with _LOCK:
            _MEMORY[key] = entry
            while len(_MEMORY) > _MEMORY_SIZE:
                _MEMORY.popitem(last=False)
    compiled, out_def = entry
    return jax.tree_util.tree_unflatten(out_def, compiled(*leaves))


def _compile(jitted: Any, static: tuple, in_def: Any, leaves: list, kwargs: dict) -> tuple:
    """`jitted` compiled as a function of the flat input arrays, and its output's structure.

    Flat on both sides: the program then takes and gives plain lists of arrays, and its files
    hold no pytree structure of hbflow's or the user's classes (only the output's, pickled).
    """
    import jax

    out_defs = []

    def flat(*xs):
        out = jitted(*static, *jax.tree_util.tree_unflatten(in_def, xs), **kwargs)
        out_leaves, out_def = jax.tree_util.tree_flatten(out)
        out_defs.append(out_def)
        return out_leaves

    lowered = jax.jit(flat).lower(*leaves)
    # An executable that JAX loaded from its own persistent cache does not serialize whole (its
    # copy fails to run: "Function ... not found"), so these programs are compiled afresh and
    # kept here only: JAX is told not to keep them (its minimum compile time is raised for this
    # compilation), and one it loaded all the same is used but not stored.
    with _LOCK:
        _listen()
        name = "jax_persistent_cache_min_compile_time_secs"
        minimum = getattr(jax.config, name)
        jax.config.update(name, 1e12)
        hits = _HITS[0]
        try:
            compiled = lowered.compile()
        finally:
            jax.config.update(name, minimum)
        fresh = _HITS[0] == hits
    return compiled, out_defs[0], fresh


def _device_ids(compiled: Any) -> list[int]:
    """The ids of the devices a compiled program runs on (one, or a sweep's whole mesh).

    Read from its outputs as well as its inputs: XLA drops inputs the program does not use (the
    point of a Hessian estimate on a quadratic), and a program may have none left.
    """
    import jax

    ids: set[int] = set()
    for shardings in (compiled.input_shardings, compiled.output_shardings):
        for sharding in jax.tree_util.tree_leaves(shardings):
            ids |= {d.id for d in sharding.device_set}
    return sorted(ids)


# Loads from JAX's persistent cache seen so far (a listener counts them).
_HITS = [0]


@functools.cache
def _listen() -> None:
    from jax import monitoring

    def count(event: str, **kwargs: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            _HITS[0] += 1

    monitoring.register_event_listener(count)


def _load(path: Path) -> tuple | None:
    import jax
    from jax.experimental import serialize_executable

    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        payload, in_tree, out_tree, out_def, ids = pickle.loads(raw)
        # Loaded onto the devices it was compiled for (by default it would be all of them).
        devices = [d for d in jax.devices() if d.id in ids]
        if len(devices) != len(ids):
            raise ValueError("the devices of this program are not all present")
        compiled = serialize_executable.deserialize_and_load(
            payload, in_tree, out_tree, execution_devices=devices
        )
    except Exception:  # noqa: BLE001 - a damaged or foreign file: compile again
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a read-only cache
            pass
        return None
    mark_used(path)
    return compiled, out_def


def _store(path: Path, compiled: Any, out_def: Any) -> None:
    from jax.experimental import serialize_executable

    try:
        payload = (*serialize_executable.serialize(compiled), out_def, _device_ids(compiled))
        raw = pickle.dumps(payload)
        if pickle.loads(raw)[3] != out_def:  # an output structure that pickle does not keep
            return
    except Exception:  # noqa: BLE001 - a program that cannot be serialized is not kept
        return
    try:
        write_atomically(path, raw)  # private: a program is code that will be run
    except OSError:  # a read-only or full disk: the program is used, not kept
        return
    trim(path.parent, ".program", cache_limit(), path)
