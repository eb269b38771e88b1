"""Readers for the files of offline W&B runs, shared by the tracking and harness tests.

wandb 0.31 writes no config.yaml or wandb-summary.json for an offline run and ships no
Python reader for its transaction log (``run-<id>.wandb``), so `read_transaction_log`
decodes it into protobuf records.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

# The transaction log starts with a 7-byte header: ident ":W&B", magic 0xBEE1 and
# version 0. LevelDB's log format follows (doc/log_format.md in the LevelDB sources).
# The file is cut into 32 KiB blocks of records. Each record has a 7-byte header
# (checksum, payload length, type) and a payload, and a protobuf message longer than
# the rest of a block is split into FIRST, MIDDLE and LAST records. W&B computes the
# checksum with zlib's CRC-32 seeded with the type byte, not with LevelDB's CRC-32C.
FILE_HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")
BLOCK_SIZE = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_transaction_log(path: Path) -> list:
    """Decode every record of a ``.wandb`` file into `wandb_internal_pb2.Record`s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = FILE_HEADER.unpack_from(data)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"unknown header in {path}"

    payloads = []
    fragments = b""
    position = FILE_HEADER.size
    while position + RECORD_HEADER.size <= len(data):
        block_left = BLOCK_SIZE - position % BLOCK_SIZE
        if block_left < RECORD_HEADER.size:
            position += block_left  # A record header never starts in the last 6 bytes.
            continue
        checksum, length, record_type = RECORD_HEADER.unpack_from(data, position)
        if (checksum, length, record_type) == (0, 0, 0):
            position += block_left  # The rest of the block is zero padding.
            continue
        start = position + RECORD_HEADER.size
        payload = data[start : start + length]
        expected = zlib.crc32(payload, zlib.crc32(bytes([record_type])))
        assert checksum == expected, f"bad checksum at byte {position} of {path}"
        position = start + length

        if record_type == FULL:
            payloads.append(payload)
        elif record_type == FIRST:
            fragments = payload
        elif record_type == MIDDLE:
            fragments += payload
        elif record_type == LAST:
            payloads.append(fragments + payload)

    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def offline_run_dirs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def records_of(offline_dir: Path) -> list:
    (log_path,) = offline_dir.glob("run-*.wandb")
    return read_transaction_log(log_path)


def item_key(item) -> str:
    """Join a history or summary item's key path with '.', as W&B shows nested keys."""
    return item.key if item.key else ".".join(item.nested_key)


def history_rows(records) -> list[dict]:
    return [
        {item_key(item): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]


def summary_of(records) -> dict:
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for update in record.summary.update:
                summary[item_key(update)] = json.loads(update.value_json)
    return summary


def run_record(records):
    (run,) = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    return run


def config_of(records) -> dict:
    config = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            continue
        for update in updates:
            config[item_key(update)] = json.loads(update.value_json)
    return config
