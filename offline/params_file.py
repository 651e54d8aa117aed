"""The parameters file of the offline job: what ``recsys offline tune`` writes and
``recsys offline run --params FILE`` reads.

``{"format": 1, "params": {...}, "tuned": {...}}``: ``params`` holds any
:class:`offline.spec.ModelParams` field (the tuner writes the ones it searches), ``tuned``
where they came from (the study, its trials, the validation figures). Anything unknown or
of the wrong type is refused with a one-line error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from offline.spec import GENERATORS, ModelParams
from shared.errors import DataError

if TYPE_CHECKING:
    from offline.tune import TuneResult

PARAMS_FORMAT = 1


def write_params(path: Path, result: TuneResult, label: str) -> Path:
    """Write the best parameters and where they came from; ``--params`` reads the file."""
    body = {
        "format": PARAMS_FORMAT,
        "params": {key: result.params.as_dict()[key] for key in _TUNED},
        "tuned": {
            "study": result.study,
            "data": label,
            "trials": result.trials,
            "complete_trials": result.complete,
            "validation_users": result.valid_users,
            f"validation_ndcg@{result.k}": round(result.value, 6),
            "members": {m: round(v, 6) for m, v in result.members.items()},
            "created_at": int(time.time()),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    return path


_TUNED = (
    "ease_l2",
    "als_factors",
    "als_regularization",
    "als_alpha",
    "als_iterations",
    "covisit_neighbours",
    "covisit_asymmetry",
    "blend_weights",
)


def load_params(path: Path, base: ModelParams | None = None) -> tuple[ModelParams, dict[str, Any]]:
    """Read a params file: ``{"params": {...}}`` with any ModelParams field. Returns the
    parameters and the file's ``tuned`` record (empty when it has none). Anything unknown or
    of the wrong type raises a DataError naming the file and the key."""
    base = base or ModelParams()
    where = f"--params {path}"
    if not path.is_file():
        raise DataError(f"{where}: file not found")
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as err:
        raise DataError(f"{where}: not JSON ({err})") from None
    if not isinstance(body, dict) or not isinstance(body.get("params"), dict):
        raise DataError(f'{where}: expected an object with a "params" object')
    values: dict[str, Any] = body["params"]
    fields = {f.name: f for f in dataclasses.fields(ModelParams)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    checked = {
        key: _checked(where, key, value, getattr(base, key)) for key, value in values.items()
    }
    tuned = body.get("tuned")
    return dataclasses.replace(base, **checked), tuned if isinstance(tuned, dict) else {}


def _checked(where: str, key: str, value: Any, default: Any) -> Any:
    if key == "blend_weights":
        if not isinstance(value, dict) or not value:
            raise DataError(f"{where}: blend_weights must be an object of generator -> weight")
        other = sorted(set(value) - set(GENERATORS))
        if other:
            raise DataError(
                f"{where}: blend weights for unknown generator(s) {', '.join(other)} "
                f"(this job has {', '.join(GENERATORS)})"
            )
        return {name: _number(where, f"blend_weights.{name}", w, 0.0) for name, w in value.items()}
    if isinstance(default, bool) or isinstance(value, bool):
        raise DataError(f"{where}: {key} must be a number, got {value!r}")
    if isinstance(default, int):
        least = 0 if key == "seed" else 1
        if not isinstance(value, int) or value < least:
            raise DataError(f"{where}: {key} must be an integer >= {least}, got {value!r}")
        return value
    return _number(where, key, value, None)


def _number(where: str, key: str, value: Any, minimum: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{where}: {key} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise DataError(f"{where}: {key} must be at least {minimum}, got {value!r}")
    return float(value)
