"""SHA-256 of a GGUF file's parts: the whole file, the header (metadata and tensor infos, up to
the data section) and each tensor's data, read with the Python standard library alone.

Used by bench/quantize-vs-llama-cpp (which bytes of two quantized files differ) and
bench/quant-reference-hashes (the reference wazn's tests compare against).
"""

import hashlib
import struct

# Bytes of one value of each fixed-size GGUF metadata type, by type id.
FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9
# (block size, bytes per block) of the ggml types a quantized file holds, by id.
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
          30: (1, 2), 39: (32, 17)}
NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
         11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16", 39: "MXFP4"}


class Reader:
    def __init__(self, f):
        self.f = f

    def take(self, n):
        b = self.f.read(n)
        if len(b) != n:
            raise ValueError("truncated GGUF header")
        return b

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        return self.take(self.u64()).decode("utf-8", "replace")

    def skip_value(self, vtype):
        if vtype == STRING:
            self.take(self.u64())
        elif vtype == ARRAY:
            etype, n = self.u32(), self.u64()
            if etype in FIXED:
                self.take(FIXED[etype] * n)
            else:
                for _ in range(n):
                    self.skip_value(etype)
        else:
            self.take(FIXED[vtype])


def tensor_layout(path):
    """(data section offset, [(name, type name, dims, offset, size)]) of a GGUF file."""
    with open(path, "rb") as f:
        r = Reader(f)
        if r.take(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        r.u32()
        n_tensors, n_kv = r.u64(), r.u64()
        alignment = 32
        for _ in range(n_kv):
            key, vtype = r.string(), r.u32()
            if key == "general.alignment" and vtype == 4:
                alignment = r.u32()
            else:
                r.skip_value(vtype)
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.u64() for _ in range(r.u32())]
            ttype, offset = r.u32(), r.u64()
            block, size = BLOCKS.get(ttype, (1, 0))
            n = 1
            for d in dims:
                n *= d
            infos.append((name, NAMES.get(ttype, str(ttype)), dims, offset, n // block * size))
        data_offset = -(-f.tell() // alignment) * alignment
    return data_offset, [(n, t, d, data_offset + o, s) for n, t, d, o, s in infos]


def file_hashes(path):
    """{"file": sha256, "header": sha256, "tensors": {name: (type, sha256)}} of a GGUF file."""
    data_offset, tensors = tensor_layout(path)
    whole = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            whole.update(chunk)
        f.seek(0)
        header = hashlib.sha256(f.read(data_offset)).hexdigest()
        by_tensor = {}
        for name, ttype, _, offset, size in tensors:
            f.seek(offset)
            h = hashlib.sha256()
            left = size
            while left:
                chunk = f.read(min(left, 1 << 24))
                if not chunk:
                    raise ValueError(f"{path}: tensor {name} runs past the end")
                h.update(chunk)
                left -= len(chunk)
            by_tensor[name] = (ttype, h.hexdigest())
    return {"file": whole.hexdigest(), "header": header, "tensors": by_tensor}
