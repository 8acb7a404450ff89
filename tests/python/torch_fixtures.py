# SPDX-License-Identifier: MIT
"""Fixtures for tests/test_torch_checkpoint.cpp: `torch_fixtures.py OUTDIR` writes

  pytorch_model.bin      torch.save of a state dict with float32/float16/bfloat16/float64/int64 tensors, a
                         transposed view saved as is (non-contiguous), views sharing one storage (with offsets and
                         strides), a 0-dim tensor, an empty tensor and an nn.Parameter (pickled via
                         torch._utils._rebuild_parameter)
  expected.safetensors   the same tensors made contiguous, in the hand-assembled reference layout
                         (safetensors_reference.py): what minibert must read back, element for element
  names.json             the state dict's keys in order
  legacy.bin             the same dict saved in the pre-1.6 (non-zip) format
  compressed.bin         pytorch_model.bin rewritten with every entry DEFLATE-compressed
  zip64.bin              pytorch_model.bin rewritten with ZIP64 extra fields in every entry
  big_endian.bin         pytorch_model.bin plus a <top>/byteorder entry saying "big"
  forbidden_global.bin   a torch-like zip whose data.pkl calls os.system (it would create OUTDIR/PWNED when run
                         by Python's pickle; minibert must refuse it before anything happens)
  not_a_state_dict.bin   torch.save of {"a": 1}
  huge_storage.bin       a torch-like zip whose data.pkl claims a float32 storage of 2^62 + 1 elements over a
                         4-byte record (2^62 + 1 times 4 wraps to 4 in 64 bits) and a tensor of that many elements

`torch_fixtures.py --zip-bomb PATH` writes only a zip bomb: a stored data.pkl over a float32 storage of 2^28 elements
whose record is 1 GiB of zeros DEFLATE-compressed to about 1 MB.
"""
import collections
import json
import io
import os
import pickle
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_reference  # noqa: E402


def state_dict():
    g = torch.Generator().manual_seed(42)
    shared = torch.randn(12, generator=g)
    base = torch.randn(3, 4, generator=g)
    sd = collections.OrderedDict()
    sd["encoder.layer.0.attention.self.query.weight"] = torch.randn(4, 3, generator=g)
    sd["half"] = (torch.randn(5, generator=g) * 10).to(torch.float16)
    sd["bf16"] = (torch.randn(2, 3, generator=g) * 10).to(torch.bfloat16)
    sd["double"] = torch.randn(3, generator=g, dtype=torch.float64)
    sd["transposed"] = base.t()                        # (4,3), stride (1,4)
    sd["shared.full"] = shared                         # storage of 12
    sd["shared.slice"] = shared[2:7]                   # offset 2
    sd["shared.strided"] = shared.view(3, 4)[:, 1]     # offset 1, stride (4,)
    sd["shared.block"] = shared.view(3, 4)[1:, 1:3].t()  # offset 5, size (2,2), stride (1,4)
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["position_ids"] = torch.arange(7).expand(1, -1)  # int64, stride (0,1)
    sd["param"] = torch.nn.Parameter(torch.randn(2, generator=g))
    assert not sd["transposed"].is_contiguous() and not sd["shared.block"].is_contiguous()
    return sd


def main(out):
    sd = state_dict()
    torch.save(sd, f"{out}/pytorch_model.bin")
    safetensors_reference.save({k: v.detach().contiguous() for k, v in sd.items()}, f"{out}/expected.safetensors")
    with open(f"{out}/names.json", "w") as f:
        json.dump(list(sd.keys()), f)
    torch.save(sd, f"{out}/legacy.bin", _use_new_zipfile_serialization=False)

    with zipfile.ZipFile(f"{out}/pytorch_model.bin") as src, \
            zipfile.ZipFile(f"{out}/compressed.bin", "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))

    # A big-endian writer's archive (torch >= 2.1 records the byte order in <top>/byteorder)
    with zipfile.ZipFile(f"{out}/pytorch_model.bin") as src, \
            zipfile.ZipFile(f"{out}/big_endian.bin", "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        dst.writestr("pytorch_model/byteorder", "big")

    # The same archive in ZIP64 form: with the limit at 0, Python's zipfile gives every entry ZIP64 extra fields
    # (sizes and, past the first entry, offsets in 8-byte fields behind 0xFFFFFFFF markers); entries end up unaligned.
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 0
    try:
        with zipfile.ZipFile(f"{out}/pytorch_model.bin") as src, \
                zipfile.ZipFile(f"{out}/zip64.bin", "w", compression=zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info.filename))
    finally:
        zipfile.ZIP64_LIMIT = limit

    # GLOBAL 'os system' would run a shell command under Python's pickle.load
    marker = os.path.join(out, "PWNED")
    evil = (b"\x80\x02cos\nsystem\nq\x00X" + len("touch " + marker).to_bytes(4, "little") +
            ("touch " + marker).encode() + b"\x85q\x01Rq\x02.")
    with zipfile.ZipFile(f"{out}/forbidden_global.bin", "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/version", "3\n")

    torch.save({"a": 1}, f"{out}/not_a_state_dict.bin")

    # 2^62 + 1 float32 elements: the byte count wraps to 4, the size of the record that is really there
    with zipfile.ZipFile(f"{out}/huge_storage.bin", "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", huge_storage_pickle(2**62 + 1))
        z.writestr("archive/data/0", b"\0\0\0\0")
        z.writestr("archive/version", "3\n")


class _FakeStorage:
    pass


class _FakeTensor:
    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (_FakeStorage(), 0, (self.n,), (1,), False, collections.OrderedDict()))


def huge_storage_pickle(n):
    """data.pkl of {'w': a float32 tensor of n elements over storage '0' said to hold n elements}"""
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", n) if isinstance(obj, _FakeStorage) else None
    buf = io.BytesIO()
    P(buf, protocol=2).dump(collections.OrderedDict([("w", _FakeTensor(n))]))
    return buf.getvalue()


def zip_bomb(path):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", huge_storage_pickle(2**28), compress_type=zipfile.ZIP_STORED)
        with z.open("archive/data/0", "w", force_zip64=True) as w:
            for _ in range(64):
                w.write(bytes(1 << 24))


if __name__ == "__main__":
    if sys.argv[1] == "--zip-bomb":
        zip_bomb(sys.argv[2])
    else:
        main(sys.argv[1])
