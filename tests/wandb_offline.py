"""Test support: read back what an offline W&B run recorded (what a later ``wandb sync`` would upload), without a
network. Parses the run's ``run-<id>.wandb`` record stream (LevelDB log blocks of protobuf ``Record``s)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _put(d: dict, item, value) -> None:
    keys = [item.key] if item.key else list(item.nested_key)
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _record_chunks(path: Path) -> list[bytes]:
    """The record payloads of a W&B ``.wandb`` file (LevelDB log format: 32 KiB blocks, 7-byte chunk headers)."""
    import struct

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B record file")
    chunks, pos, buf, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # a chunk the writer has not finished
            break
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(payload)
        elif kind == 2:
            buf = payload
        elif kind == 3:
            buf += payload
        elif kind == 4:
            chunks.append(buf + payload)
        elif kind == 0 and length == 0:
            pos += block - pos % block if pos % block else 0
    return chunks


def read_offline_run(run_dir: str | Path, wait_s: float = 60.0) -> dict[str, Any]:
    """Summary, history rows, config, metric definitions and artifacts of an offline W&B run (``.../offline-run-*``).

    Parses the run's ``run-<id>.wandb`` record stream (LevelDB log blocks of protobuf ``Record``s), so tests and
    users can check what a later ``wandb sync`` would upload without a network. ``run.finish()`` can return before
    the W&B service process has flushed the stream (seen on a loaded 2-core CI machine: a file holding only its
    header), so this waits up to ``wait_s`` seconds for the stream's closing ``exit`` record.
    """
    import time

    from wandb.proto import wandb_internal_pb2 as pb

    path = next(Path(run_dir).glob("run-*.wandb"))
    deadline = time.monotonic() + wait_s
    while True:
        records = [pb.Record.FromString(c) for c in _record_chunks(path)]
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: no exit record after {wait_s:.0f} s; the run is still open or was killed "
                               "before W&B flushed it")
        time.sleep(0.2)
    out: dict[str, Any] = {"summary": {}, "history": [], "config": {}, "metrics": {}, "run": {}, "artifacts": []}
    for rec in records:
        field = rec.WhichOneof("record_type")
        if field == "summary":
            for item in rec.summary.update:
                _put(out["summary"], item, json.loads(item.value_json))
        elif field == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _put(row, item, json.loads(item.value_json))
            out["history"].append(row)
        elif field == "config":
            for item in rec.config.update:
                _put(out["config"], item, json.loads(item.value_json))
        elif field == "metric":
            out["metrics"][rec.metric.name or rec.metric.glob_name] = rec.metric.step_metric
        elif field == "artifact":
            a = rec.artifact
            files = [e.path for e in a.manifest.contents]
            if not files and a.manifest.manifest_file_path:  # large manifests go to a side file
                with open(a.manifest.manifest_file_path) as f:
                    files = [json.loads(line)["path"] for line in f if line.strip()]
            out["artifacts"].append({"name": a.name, "type": a.type, "files": files,
                                     "metadata": json.loads(a.metadata) if a.metadata else {}})
        elif field == "run":  # the first record, then updates: keep what each sets
            vals = {"id": rec.run.run_id, "group": rec.run.run_group, "name": rec.run.display_name,
                    "tags": list(rec.run.tags), "job_type": rec.run.job_type}
            out["run"].update({k: v for k, v in vals.items() if v})
    return out
