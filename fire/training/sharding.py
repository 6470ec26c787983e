"""Device mesh and the logical-axis rules that shard parameters and activations.

Mesh axes: ``data`` (pure data parallelism), ``fsdp`` (data parallelism with parameters and
optimizer state sharded along ``embed``) and ``tensor`` (Megatron-style: heads, MLP and
vocabulary split). The batch is split over ``data`` x ``fsdp``.
"""

import math

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fire.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or None: replicated)
RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
)


class MeshError(UserError, ValueError):
    """A mesh the devices cannot form."""


def mesh_shape(requested: dict, num_devices: int) -> dict:
    """Resolves ``-1`` (at most one) so the axes multiply to ``num_devices``. Fully explicit
    sizes may use fewer devices than there are (e.g. a 1-device reference run).

    Raises:
      MeshError: an unknown axis, a size that is not an integer >= 1 or -1, or sizes the
        devices cannot form.
    """
    unknown = sorted(set(requested) - set(MESH_AXES))
    if unknown:
        raise MeshError(f"Unknown mesh axis {', '.join(unknown)}; valid: {', '.join(MESH_AXES)}.")
    sizes = {axis: requested.get(axis, 1) for axis in MESH_AXES}
    bad = {a: s for a, s in sizes.items() if isinstance(s, bool) or not isinstance(s, int) or not (s >= 1 or s == -1)}
    if bad:
        raise MeshError(f"Mesh axis sizes must be integers >= 1, or -1 to fill; got {bad}.")
    fill = [a for a, s in sizes.items() if s == -1]
    if len(fill) > 1:
        raise MeshError(f"At most one mesh axis may be -1 (fill); got {sizes}.")
    known = math.prod(s for s in sizes.values() if s != -1)
    if fill:
        if num_devices % known:
            raise MeshError(f"Mesh {sizes}: {num_devices} devices do not divide by the fixed axes ({known}).")
        sizes[fill[0]] = num_devices // known
    if math.prod(sizes.values()) > num_devices or (fill and math.prod(sizes.values()) != num_devices):
        raise MeshError(f"Mesh {sizes} needs {math.prod(sizes.values())} devices but {num_devices} are present.")
    return sizes


def make_mesh(requested: dict, devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    sizes = mesh_shape(requested, len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    devices = devices[: math.prod(shape)]
    try:
        grid = mesh_utils.create_device_mesh(shape, devices)
    except Exception:  # e.g. CPU devices with no topology: plain row-major order
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]
