# SPDX-License-Identifier: MIT
"""Reference safetensors writer, assembled by hand (no `safetensors` package on the test machines).

It mirrors what huggingface/safetensors' Rust core (safetensors/src/tensor.rs, `prepare` + `serialize`), which the
Python package `safetensors.torch.save_file` calls, writes:
  * tensors sorted by descending dtype alignment (the crate's Dtype enum order), then by name;
  * data laid out back to back in that order, no padding between tensors;
  * header = compact JSON (serde_json: no spaces, non-ASCII kept as UTF-8, \\" \\\\ \\b \\f \\n \\r \\t escaped, other
    control characters as \\u00xx), "__metadata__" first when given, then each tensor as
    {"dtype":..,"shape":[..],"data_offsets":[begin,end]} in data order;
  * header padded with spaces (0x20) to a multiple of 8 bytes; 8-byte little-endian header length first.
serde writes a HashMap for __metadata__, whose order is arbitrary; we sort its keys (so does minibert).

Run as a script: `safetensors_reference.py OUTDIR` writes OUTDIR/reference.safetensors plus, per tensor i,
OUTDIR/i.raw (its little-endian bytes) and OUTDIR/i.f64 (its values as little-endian float64), and
OUTDIR/manifest.json listing {name, dtype, shape, raw, f64} in a shuffled order.
"""
import json
import struct
import sys

import torch

# The Rust crate's Dtype enum, in its declaration (= increasing alignment) order.
RUST_DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                    "F64", "I64", "U64"]
TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
               torch.bool: "BOOL"}


def tensor_bytes(t):
    """The tensor's elements in row-major order as little-endian bytes."""
    t = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view(torch.uint8).numpy().tobytes()


def serialize(tensors, metadata=None):
    items = sorted(tensors.items(), key=lambda kv: (-RUST_DTYPE_ORDER.index(TORCH_TO_ST[kv[1].dtype]), kv[0]))
    header_parts = []
    if metadata is not None:
        header_parts.append(json.dumps("__metadata__") + ":" +
                            json.dumps(dict(sorted(metadata.items())), separators=(",", ":"), ensure_ascii=False))
    data = []
    offset = 0
    for name, t in items:
        b = tensor_bytes(t)
        info = '{"dtype":%s,"shape":%s,"data_offsets":[%d,%d]}' % (
            json.dumps(TORCH_TO_ST[t.dtype]), json.dumps(list(t.shape), separators=(",", ":")), offset, offset + len(b))
        header_parts.append(json.dumps(name, ensure_ascii=False) + ":" + info)
        data.append(b)
        offset += len(b)
    header = ("{" + ",".join(header_parts) + "}").encode("utf-8")
    header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(data)


def save(tensors, path, metadata=None):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def sample_tensors():
    g = torch.Generator().manual_seed(1234)
    special16 = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6e-8, float("inf"), float("-inf"), float("nan"),
                              1e-3, 3.14159, -7.0])
    return {
        "bert.embeddings.word_embeddings.weight": torch.randn(7, 5, generator=g),
        "encoder.layer.0.attention.self.query.weight": special16.to(torch.float16).reshape(3, 4),
        "encoder.layer.0.output.dense.bias": (torch.randn(2, 3, 2, generator=g) * 100).to(torch.bfloat16),
        "bf16.special": special16.to(torch.bfloat16),
        "pooler.double": torch.randn(4, generator=g, dtype=torch.float64),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "position_ids": torch.arange(6, dtype=torch.int64).reshape(1, 6),
        "mask": torch.tensor([True, False, True]),
        'weird "name"\t\u00fc\u4e2d\x01': torch.randn(2, generator=g).to(torch.float16),
        "z.last": torch.randn(3, generator=g),
        "a.first": torch.randn(1, generator=g),
    }


def main(outdir):
    tensors = sample_tensors()
    save(tensors, f"{outdir}/reference.safetensors", {"format": "pt", "source": "minibert \u00e9 test"})
    manifest = []
    for i, (name, t) in enumerate(reversed(list(tensors.items()))):  # not the file order on purpose
        with open(f"{outdir}/{i}.raw", "wb") as f:
            f.write(tensor_bytes(t))
        with open(f"{outdir}/{i}.f64", "wb") as f:
            f.write(tensor_bytes(t.to(torch.float64)))
        manifest.append({"name": name, "dtype": TORCH_TO_ST[t.dtype], "shape": list(t.shape),
                         "raw": f"{i}.raw", "f64": f"{i}.f64"})
    with open(f"{outdir}/manifest.json", "w") as f:
        json.dump(manifest, f)


if __name__ == "__main__":
    main(sys.argv[1])
