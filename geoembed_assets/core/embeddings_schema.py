"""Check an embeddings GeoParquet's schema before reading it: a dropped or retyped column is one clear error.

The columns are the writer's (`embeddings.EMBEDDING_COLUMNS`); the kinds below are those the readers rely on
(the catalog, the checks, `decode_cell`). Columns the writer adds later are required but not type-checked here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from geoembed_assets.core.embeddings import EMBEDDING_COLUMNS


class EmbeddingsSchemaError(ValueError):
    """An embeddings file is unreadable or its columns are not what the pipeline writes; names the file."""


def _list_of(check: Callable[[pa.DataType], bool]) -> Callable[[pa.DataType], bool]:
    def ok(t: pa.DataType) -> bool:
        return (pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)) and check(t.value_type)

    return ok


def _string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


KINDS: dict[str, tuple[str, Callable[[pa.DataType], bool]]] = {
    "geohash": ("string", _string),
    "scene_id": ("string", _string),
    "band": ("string", _string),
    "checkpoint_id": ("string", _string),
    "datetime": ("timestamp", pa.types.is_timestamp),
    "cell_size_px": ("integer", pa.types.is_integer),
    "latent_channels": ("integer", pa.types.is_integer),
    "latent_height": ("integer", pa.types.is_integer),
    "latent_width": ("integer", pa.types.is_integer),
    "valid_mask": ("binary (packed bits) or null", lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t)),
    "valid_fraction": ("floating point", pa.types.is_floating),
    "recon_mse": ("floating point", pa.types.is_floating),
    "embedding": ("list of int8", _list_of(pa.types.is_int8)),
    "embedding_scale": ("list of float32", _list_of(pa.types.is_float32)),
    "geometry": ("binary (WKB)", lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)),
}


def check_embeddings_schema(path: str | Path) -> pa.Schema:
    """The file's schema, after checking every expected column is present with a usable type; else raise."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise EmbeddingsSchemaError(f"{path}: not a readable Parquet file: {e}") from e
    problems = []
    for name in EMBEDDING_COLUMNS:
        if name not in schema.names:
            problems.append(f"column {name!r} is missing")
            continue
        kind, ok = KINDS.get(name, ("any", lambda t: True))
        if not ok(schema.field(name).type):
            problems.append(f"column {name!r} is {schema.field(name).type}, expected {kind}")
    if problems:
        raise EmbeddingsSchemaError(f"{path}: not a geoembed embeddings file: " + "; ".join(problems))
    return schema


def read_embeddings(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The embeddings table (or some of its columns), schema-checked first."""
    check_embeddings_schema(path)
    return pq.read_table(path, columns=columns)
