// safetensors: HuggingFace's pickle-free tensor file (https://github.com/huggingface/safetensors), read and
// written here without ever holding a whole file in memory.
//
// Byte layout of one file of S bytes:
//
//   1. bytes [0, 8): N, the header length, an unsigned 64-bit little-endian integer.
//      Valid: N ≤ 100 000 000 and 8 + N ≤ S.
//   2. bytes [8, 8 + N): the header, UTF-8 JSON, one object:
//        { "__metadata__": { string: string, ... },              (optional, free-form)
//          "<tensor name>": { "dtype": D, "shape": [d0, d1, ...], "data_offsets": [b, e] }, ... }
//      D ∈ F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL (sizes 8 4 2 2 8 4 2 1 1 1 bytes); the shape may be []
//      (a scalar, 1 element) or contain 0 (no elements). Each entry has exactly these three fields.
//      The writer pads the JSON with trailing spaces (0x20) so that 8 + N is a multiple of 8.
//   3. bytes [8 + N, S): the data section. Tensor t occupies file bytes [8 + N + b, 8 + N + e):
//      its elements in row-major order, little-endian, e − b = d0·d1·… × size(D); F16/BF16 are raw bits,
//      BOOL one byte per element (0 or 1).
//   4. Sorted by b, the spans [b, e) tile [0, S − 8 − N) exactly: the first starts at 0, each next one
//      starts where the previous ended, the last ends at S − 8 − N (no gaps, no overlaps).
//
// Worked example: tensor "w", F32, shape [2], values [1.0, −2.0], metadata {"format": "pt"}.
//   JSON  {"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  85 bytes
//         + 3 spaces → N = 88, so the data starts at 8 + 88 = 96 (a multiple of 8)
//   bytes 0..7     58 00 00 00 00 00 00 00        N = 0x58 = 88
//         8..95    7B 22 5F 5F … 7D 20 20 20      the JSON and its padding
//         96..99   00 00 80 3F                    1.0  = 0x3F800000
//         100..103 00 00 00 C0                    −2.0 = 0xC0000000
//   S = 104; "w" has data_offsets [0, 8] and absolute byte range [96, 104).
//
// A sharded checkpoint splits tensors over model-00001-of-0000K.safetensors … and adds
// model.safetensors.index.json = {"metadata": {"total_size": Σ data bytes}, "weight_map": {name: file}}.

export { SafetensorsError } from './safetensors-errors.js';
export {
  CODE_OF_DTYPE,
  DATA_ALIGNMENT,
  DTYPE_OF_CODE,
  MAX_HEADER_BYTES,
  type DtypeCode,
  type ParsedHeader,
  type TensorInfo,
} from './safetensors-header.js';
export { SafetensorsFile, asFloat32, readHeaderSync } from './safetensors-read.js';
export {
  DEFAULT_MAX_SHARD_BYTES,
  SafetensorsWriter,
  writeAtomic,
  writeSafetensors,
  type SafetensorsWriterOptions,
  type WrittenCheckpoint,
} from './safetensors-write.js';
