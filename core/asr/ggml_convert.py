"""Convert a CTranslate2 Whisper model (``model.bin`` + ``vocabulary.txt``) into a whisper.cpp ggml file.

Both layouts are read and written with numpy alone:

* CTranslate2 ``model.bin`` (binary version 6): ``u32 version``, ``str spec``, ``u32 revision``,
  ``u32 n_variables``, then per variable ``str name, u8 rank, u32 dims[rank], u8 dtype, u32 n_bytes, data``,
  then ``u32 n_aliases`` and ``(str alias, str target)`` pairs. A ``str`` is ``u16 length`` (with its NUL) + bytes.
* whisper.cpp ggml: ``i32 magic 'ggml'``, eleven ``i32`` hyper-parameters, the mel filterbank
  (``i32 n_mels, i32 n_fft_bins, f32[n_mels * n_fft_bins]``), the byte-level vocabulary
  (``i32 n``, then ``i32 length + bytes`` per token) and the tensors, each ``i32 n_dims, i32 name_length,
  i32 ftype``, dimensions innermost first, the name, then the data (f16 matrices, f32 vectors and
  positional embeddings), named as in OpenAI's PyTorch checkpoints.

CTranslate2 fuses attention projections (self-attention q|k|v, cross-attention k|v) and stores no key bias;
the conversion splits them back. The mel filterbank is not in the CTranslate2 folder: it is recomputed here
(Slaney mel scale and area normalisation, as Whisper's own ``mel_filters.npz`` was made).
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

log = logging.getLogger(__name__)

GGML_MAGIC = 0x67676D6C
SAMPLE_RATE = 16000
N_FFT = 400
CT2_BINARY_VERSION = 6
BASE_VOCAB_SIZE = 50256
"""Byte-level BPE tokens written to the ggml file; whisper.cpp names the special tokens after them itself."""

_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}


class ConversionError(ValueError):
    """The CTranslate2 folder is not a Whisper model this converter understands."""


@dataclass(frozen=True, slots=True)
class WhisperHParams:
    """Whisper's hyper-parameters in ggml header order."""

    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int

    def pack(self, ftype: int) -> bytes:
        """The header's eleven int32 values (the last one is the file type: 1 = f16)."""
        values = (
            self.n_vocab, self.n_audio_ctx, self.n_audio_state, self.n_audio_head, self.n_audio_layer,
            self.n_text_ctx, self.n_text_state, self.n_text_head, self.n_text_layer, self.n_mels, ftype,
        )
        return struct.pack("<11i", *values)


def read_ct2_model(path: Path) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 ``model.bin`` (aliases resolved) as numpy arrays (memory-mapped)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(raw)
    offset = 0

    def take(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from(fmt, buf, offset)
        offset += struct.calcsize(fmt)
        return values

    def take_str() -> str:
        nonlocal offset
        (length,) = take("<H")
        text = bytes(buf[offset : offset + length - 1]).decode("utf-8")
        offset += length
        return text

    (version,) = take("<I")
    if version != CT2_BINARY_VERSION:
        raise ConversionError(f"{path}: CTranslate2 binary version {version}, expected {CT2_BINARY_VERSION}")
    spec = take_str()
    if spec != "WhisperSpec":
        raise ConversionError(f"{path}: a {spec!r} model, not a Whisper model")
    take("<I")  # spec revision
    (n_variables,) = take("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_variables):
        name = take_str()
        (rank,) = take("<B")
        shape = take(f"<{rank}I")
        dtype_id, n_bytes = take("<BI")
        if dtype_id not in _CT2_DTYPES:
            raise ConversionError(f"{path}: variable {name} has unsupported CTranslate2 dtype {dtype_id}")
        dtype = _CT2_DTYPES[dtype_id]
        variables[name] = raw[offset : offset + n_bytes].view(dtype).reshape(shape)
        offset += n_bytes
    (n_aliases,) = take("<I")
    for _ in range(n_aliases):
        alias, target = take_str(), take_str()
        variables[alias] = variables[target]
    return variables


def read_vocabulary(path: Path) -> list[bytes]:
    """Read CTranslate2's ``vocabulary.txt`` (GPT-2 byte-to-unicode text, one token a line) as raw token bytes."""
    unicode_to_byte = {char: byte for byte, char in _bytes_to_unicode().items()}
    tokens = path.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    try:
        return [bytes(unicode_to_byte[c] for c in token) for token in tokens[:BASE_VOCAB_SIZE]]
    except KeyError as exc:
        raise ConversionError(f"{path}: token character {exc} is not GPT-2 byte-level text") from None


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table (printable Latin-1 bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mels = freq / f_sp
    log_region = freq >= min_log_hz
    mels[log_region] = min_log_hz / f_sp + np.log(freq[log_region] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    freqs = f_sp * mels
    log_region = mels >= min_log_mel
    freqs[log_region] = min_log_hz * np.exp(logstep * (mels[log_region] - min_log_mel))
    return freqs


def mel_filterbank(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Triangular Slaney-scale mel filters with area normalisation, shape ``(n_mels, n_fft // 2 + 1)``, float32."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sample_rate / 2]))[0],
                                   n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def _hparams(v: dict[str, np.ndarray]) -> WhisperHParams:
    def n_layers(side: str) -> int:
        return len({m.group(1) for name in v if (m := re.match(rf"{side}/layer_(\d+)/", name))})

    try:
        n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
        n_audio_state, n_mels, _ = v["encoder/conv1/weight"].shape
        return WhisperHParams(
            n_vocab=int(n_vocab),
            n_audio_ctx=int(v["encoder/position_encodings/encodings"].shape[0]),
            n_audio_state=int(n_audio_state),
            n_audio_head=int(v["encoder/num_heads"]),
            n_audio_layer=n_layers("encoder"),
            n_text_ctx=int(v["decoder/position_encodings/encodings"].shape[0]),
            n_text_state=int(n_text_state),
            n_text_head=int(v["decoder/num_heads"]),
            n_text_layer=n_layers("decoder"),
            n_mels=int(n_mels),
        )
    except KeyError as exc:
        raise ConversionError(f"not a CTranslate2 Whisper model: variable {exc} is missing") from None


def _linear(v: dict[str, np.ndarray], src: str, dst: str, rows: slice = slice(None), *, bias: bool = True
            ) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", v[f"{src}/weight"][rows]
    if bias:
        yield f"{dst}.bias", v[f"{src}/bias"][rows]


def _layer_norm(v: dict[str, np.ndarray], src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", v[f"{src}/gamma"]
    yield f"{dst}.bias", v[f"{src}/beta"]


def _self_attention(v: dict[str, np.ndarray], src: str, dst: str, d: int) -> Iterator[tuple[str, np.ndarray]]:
    """Split CTranslate2's fused q|k|v projection; Whisper's key projection has no bias."""
    yield from _layer_norm(v, f"{src}/layer_norm", f"{dst}_ln")
    yield from _linear(v, f"{src}/linear_0", f"{dst}.query", slice(0, d))
    yield from _linear(v, f"{src}/linear_0", f"{dst}.key", slice(d, 2 * d), bias=False)
    yield from _linear(v, f"{src}/linear_0", f"{dst}.value", slice(2 * d, 3 * d))
    yield from _linear(v, f"{src}/linear_1", f"{dst}.out")


def _cross_attention(v: dict[str, np.ndarray], src: str, dst: str, d: int) -> Iterator[tuple[str, np.ndarray]]:
    """Cross-attention: q alone, then CTranslate2's fused k|v projection, then the output projection."""
    yield from _layer_norm(v, f"{src}/layer_norm", f"{dst}_ln")
    yield from _linear(v, f"{src}/linear_0", f"{dst}.query")
    yield from _linear(v, f"{src}/linear_1", f"{dst}.key", slice(0, d), bias=False)
    yield from _linear(v, f"{src}/linear_1", f"{dst}.value", slice(d, 2 * d))
    yield from _linear(v, f"{src}/linear_2", f"{dst}.out")


def _mlp(v: dict[str, np.ndarray], src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield from _layer_norm(v, f"{src}/layer_norm", f"{dst}.mlp_ln")
    yield from _linear(v, f"{src}/linear_0", f"{dst}.mlp.0")
    yield from _linear(v, f"{src}/linear_1", f"{dst}.mlp.2")


def whisper_tensors(v: dict[str, np.ndarray], hp: WhisperHParams) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(openai_name, array)`` for every tensor whisper.cpp loads, from CTranslate2 variables."""
    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        yield f"encoder.{conv}.weight", v[f"encoder/{conv}/weight"]
        yield f"encoder.{conv}.bias", v[f"encoder/{conv}/bias"].reshape(-1, 1)
    for i in range(hp.n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from _self_attention(v, f"{src}/self_attention", f"{dst}.attn", hp.n_audio_state)
        yield from _mlp(v, f"{src}/ffn", dst)
    yield from _layer_norm(v, "encoder/layer_norm", "encoder.ln_post")

    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in range(hp.n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from _self_attention(v, f"{src}/self_attention", f"{dst}.attn", hp.n_text_state)
        yield from _cross_attention(v, f"{src}/attention", f"{dst}.cross_attn", hp.n_text_state)
        yield from _mlp(v, f"{src}/ffn", dst)
    yield from _layer_norm(v, "decoder/layer_norm", "decoder.ln")


def _keeps_f32(name: str, array: np.ndarray) -> bool:
    """whisper.cpp expects vectors, conv biases and positional embeddings in f32, everything else in f16."""
    return array.ndim < 2 or name.endswith(("conv1.bias", "conv2.bias", "positional_embedding"))


def _write_tensor(out: BinaryIO, name: str, array: np.ndarray) -> None:
    f32 = _keeps_f32(name, array)
    data = np.ascontiguousarray(array, dtype="<f4" if f32 else "<f2")
    encoded = name.encode("utf-8")
    out.write(struct.pack("<3i", data.ndim, len(encoded), 0 if f32 else 1))
    out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
    out.write(encoded)
    out.write(data.tobytes())


def convert_ct2_to_ggml(model_dir: Path, out_path: Path) -> Path:
    """Write a whisper.cpp ggml (f16) file for the CTranslate2 Whisper model in ``model_dir``.

    The file is written under a temporary name and renamed into place, so a half-written file is never used.

    Raises:
        ConversionError: the folder holds no CTranslate2 Whisper model this converter can read.
    """
    model_bin, vocab_txt = model_dir / "model.bin", model_dir / "vocabulary.txt"
    for required in (model_bin, vocab_txt):
        if not required.is_file():
            raise ConversionError(f"{model_dir} is not a CTranslate2 Whisper folder: {required.name} is missing")
    variables = read_ct2_model(model_bin)
    hp = _hparams(variables)
    vocab = read_vocabulary(vocab_txt)
    filters = mel_filterbank(hp.n_mels)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f"{out_path.name}.{os.getpid()}.tmp")
    with tmp_path.open("wb") as out:
        out.write(struct.pack("<i", GGML_MAGIC))
        out.write(hp.pack(ftype=1))
        out.write(struct.pack("<2i", *filters.shape))
        out.write(filters.tobytes())
        out.write(struct.pack("<i", len(vocab)))
        for token in vocab:
            out.write(struct.pack("<i", len(token)))
            out.write(token)
        for name, array in whisper_tensors(variables, hp):
            _write_tensor(out, name, array)
    tmp_path.replace(out_path)
    log.info("Converted %s to %s (%.1f MB)", model_dir, out_path, out_path.stat().st_size / 1e6)
    return out_path
