"""A sentence-transformers BERT encoder (all-MiniLM-L6-v2 and its kin) in numpy: inference without torch.

Why: the Eedi and MAP agents at inference only encode a few thousand queries and search prebuilt FAISS
indexes; sentence-transformers would bring torch, transformers, scipy and scikit-learn (two thirds of
a Kaggle bundle's wheels) for that. This module reads the same model folder sentence-transformers
reads and computes the same vectors (parity within 1e-4 per component, tests/test_numpy_encoder.py)
with numpy and the `tokenizers` library alone:

- the folder: `modules.json` (Transformer -> Pooling -> optional Normalize, nothing else), the
  Transformer's `config.json` (a BERT with absolute positions), `sentence_bert_config.json`
  (max_seq_length, do_lower_case), `tokenizer.json`, the Pooling config (mean or CLS pooling);
- the weights: `model.safetensors`, parsed here (8-byte little-endian header length, a JSON header
  of dtype, shape and byte offsets, then the raw buffer), so neither torch nor safetensors is needed;
  a folder with only `pytorch_model.bin` (a pickle of torch tensors) is not supported;
- the forward pass, float32: embeddings (word + position + token type) -> LayerNorm -> N x (masked
  self-attention, dense, residual + LayerNorm, exact-erf GELU, dense, residual + LayerNorm) -> pooling
  over the attention mask -> L2 normalisation (with a Normalize module, or when asked).

`supports(folder)` says whether a folder can be run here, and `why_not(folder)` why not (mpnet-base is an
MPNet, with relative position buckets: it needs sentence-transformers, the 'retrieval' extra).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

# safetensors dtype -> numpy dtype (BF16 is widened by hand below)
DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
MODEL_TYPES = ("bert",)  # config.json model_type values this encoder runs
POOLING_MODES = ("mean", "cls")
ROWS = 64  # tokens per block of the row-wise part of a layer (measured: 32-256 alike, whole batches slower)


class UnsupportedModel(ValueError):
    """A model folder this encoder cannot run (another architecture, pooling or module, no safetensors)."""


# --- the folder ----------------------------------------------------------------------------------


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a numpy array (float tensors as float32), read with numpy alone."""
    path = Path(path)
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + length)
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        chunk = raw[start:end]
        if spec["dtype"] == "BF16":  # the top half of a float32
            array = (chunk.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif spec["dtype"] in DTYPES:
            array = chunk.view(np.dtype(DTYPES[spec["dtype"]]).newbyteorder("<"))
        else:
            raise UnsupportedModel(f"{path}: tensor {name} has dtype {spec['dtype']}, which this reader does not know")
        array = array.reshape(spec["shape"])
        tensors[name] = array.astype(np.float32) if array.dtype.kind == "f" else np.array(array)
    del raw
    return tensors


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def describe_folder(folder: Path) -> dict:
    """What the encoder needs from a sentence-transformers folder; UnsupportedModel if it cannot run it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnsupportedModel(f"{folder} is not a model folder")
    modules = _read_json(folder / "modules.json")
    if isinstance(modules, list) and modules:
        # the class names (sentence-transformers 2-5 write sentence_transformers.models.Pooling, 6 writes
        # sentence_transformers.sentence_transformer.modules.pooling.Pooling)
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds[0] != "Transformer" or kinds[1:] not in (["Pooling"], ["Pooling", "Normalize"]):
            raise UnsupportedModel(
                f"{folder}: modules {[m.get('type') for m in modules]}; this encoder runs "
                f"Transformer -> Pooling (-> Normalize) only"
            )
        transformer = folder / modules[0].get("path", "")
        pooling = _read_json(folder / modules[1].get("path", "") / "config.json")
        normalize = len(kinds) == 3
    else:  # a plain transformers folder: sentence-transformers adds mean pooling
        transformer, pooling, normalize = folder, {"pooling_mode": "mean"}, False
    config = _read_json(transformer / "config.json")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise UnsupportedModel(f"{folder} is a {model_type or 'unknown'} model; this encoder runs {MODEL_TYPES}")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel(f"{folder}: position_embedding_type {config['position_embedding_type']!r}")
    if config.get("hidden_act", "gelu") != "gelu":
        raise UnsupportedModel(f"{folder}: hidden_act {config['hidden_act']!r}; this encoder runs BERT's exact gelu")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise UnsupportedModel(f"{folder}: a BERT decoder; this encoder runs encoders")
    st_config = _read_json(transformer / "sentence_bert_config.json")
    if st_config.get("module_output_name", "token_embeddings") != "token_embeddings":
        raise UnsupportedModel(f"{folder}: the Transformer outputs {st_config['module_output_name']!r}")
    modes = pooling.get("pooling_mode")
    modes = [modes] if isinstance(modes, str) else list(modes or [])
    modes += [  # sentence-transformers before 6: one flag per mode
        mode
        for mode, key in (
            ("mean", "pooling_mode_mean_tokens"),
            ("cls", "pooling_mode_cls_token"),
            ("max", "pooling_mode_max_tokens"),
            ("mean_sqrt_len_tokens", "pooling_mode_mean_sqrt_len_tokens"),
            ("weightedmean", "pooling_mode_weightedmean_tokens"),
            ("lasttoken", "pooling_mode_lasttoken"),
        )
        if pooling.get(key) and mode not in modes
    ]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise UnsupportedModel(f"{folder}: pooling {modes or 'none'}; this encoder pools one of {POOLING_MODES}")
    for needed in ("model.safetensors", "tokenizer.json"):
        if not (transformer / needed).is_file():
            raise UnsupportedModel(f"{folder}: no {needed} (a pytorch_model.bin alone needs torch to read)")
    limit = st_config.get("max_seq_length") or _read_json(transformer / "tokenizer_config.json").get("model_max_length")
    positions = int(config.get("max_position_embeddings", 512))
    max_length = min(int(limit), positions) if limit and int(limit) < 10**6 else positions
    return {
        "transformer": transformer,
        "config": config,
        "pooling": modes[0],
        "normalize": normalize,
        "max_length": max_length,
        "lowercase": bool(st_config.get("do_lower_case", False)),
    }


def why_not(folder: Path) -> str | None:
    """None if the encoder runs `folder`, else the reason it does not (one line)."""
    try:
        describe_folder(folder)
    except UnsupportedModel as exc:
        return str(exc)
    return None


def supports(folder: Path) -> bool:
    return why_not(folder) is None


# --- the maths -----------------------------------------------------------------------------------

# erf(x) ~ x * P(x^2) / Q(x^2) on [-4, 4] (Eigen's float erf; beyond 4, erf is 1 to float precision).
_ERF_P = np.array(
    [
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    ],
    dtype=np.float32,
)
_ERF_Q = np.array(
    [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03, -1.42647390514189e-02],
    dtype=np.float32,
)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, float32 (max error about 4e-7 against math.erf: see the tests)."""
    return _erf_inplace(np.array(x, dtype=np.float32))


def _erf_inplace(x: np.ndarray) -> np.ndarray:
    """erf of a float32 array that may be overwritten (it is clipped in place): few passes, no copies."""
    np.clip(x, -4.0, 4.0, out=x)
    x2 = x * x
    p = x2 * _ERF_P[0]  # Horner's rule in x^2, in place
    for c in _ERF_P[1:-1]:
        p += c
        p *= x2
    p += _ERF_P[-1]
    q = x2 * _ERF_Q[0]
    for c in _ERF_Q[1:-1]:
        q += c
        q *= x2
    q += _ERF_Q[-1]
    p *= x
    p /= q
    return p


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, 0.5 x (1 + erf(x / sqrt 2)), into a new array."""
    out = _erf_inplace(x * np.float32(1 / math.sqrt(2)))
    out += 1.0
    out *= x
    out *= 0.5
    return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred /= np.sqrt(var + np.float32(eps))
    centred *= weight
    centred += bias
    return centred


class _Layer:
    """One BERT layer's weights: query, key and value fused into one matrix (one GEMM), the query's
    scaled by 1/sqrt(head size) ahead of time, all transposed to (in, out) so activations multiply
    from the left."""

    def __init__(self, w: dict[str, np.ndarray], prefix: str, scale: float):
        def get(name):
            return w[f"{prefix}.{name}"]

        parts = ("query", "key", "value")
        factors = [np.float32(scale), np.float32(1), np.float32(1)]
        self.qkv_w = np.ascontiguousarray(
            np.concatenate([get(f"attention.self.{p}.weight") * f for p, f in zip(parts, factors, strict=True)]).T
        )
        self.qkv_b = np.concatenate([get(f"attention.self.{p}.bias") * f for p, f in zip(parts, factors, strict=True)])
        self.out_w, self.out_b = (
            np.ascontiguousarray(get("attention.output.dense.weight").T),
            get("attention.output.dense.bias"),
        )
        self.ln1 = get("attention.output.LayerNorm.weight"), get("attention.output.LayerNorm.bias")
        self.up_w, self.up_b = np.ascontiguousarray(get("intermediate.dense.weight").T), get("intermediate.dense.bias")
        self.down_w, self.down_b = np.ascontiguousarray(get("output.dense.weight").T), get("output.dense.bias")
        self.ln2 = get("output.LayerNorm.weight"), get("output.LayerNorm.bias")


def _normalise_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weight names as BertModel saves them: no `bert.` prefix, LayerNorm `weight`/`bias` (old
    checkpoints say `gamma`/`beta`)."""
    out = {}
    for name, array in tensors.items():
        if name.startswith("bert."):
            name = name[len("bert.") :]
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[name] = array
    return out


class NumpyEncoder:
    """The sentence-transformers model in `folder`, encoding with numpy. `encode` returns float32 rows in
    order, L2-normalised when the folder has a Normalize module or `normalize=True`."""

    def __init__(self, folder: Path):
        from mcqa.extras import require

        self.folder = Path(folder)
        spec = describe_folder(self.folder)
        tokenizers = require("tokenizers", "embed", "the numpy embedder")
        config = spec["config"]
        self.pooling, self.normalize, self.max_length = spec["pooling"], spec["normalize"], spec["max_length"]
        self.lowercase = spec["lowercase"]
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = tokenizers.Tokenizer.from_file(str(spec["transformer"] / "tokenizer.json"))
        self.tokenizer.no_padding()  # padded per batch below, to the batch's longest text
        self.tokenizer.enable_truncation(max_length=self.max_length)
        w = _normalise_names(read_safetensors(spec["transformer"] / "model.safetensors"))
        missing = [n for n in ("embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight") if n not in w]
        if missing:
            raise UnsupportedModel(f"{self.folder}: model.safetensors has no {missing[0]} (not a BertModel's weights)")
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w.get("embeddings.token_type_embeddings.weight")
        self.ln = w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]
        self.dim = int(self.word.shape[1])
        if self.dim % self.heads:
            raise UnsupportedModel(f"{self.folder}: hidden size {self.dim} is not a multiple of {self.heads} heads")
        scale = 1 / math.sqrt(self.dim // self.heads)
        self.layers = [_Layer(w, f"encoder.layer.{i}", scale) for i in range(int(config["num_hidden_layers"]))]

    def get_embedding_dimension(self) -> int:  # the name SentenceTransformer uses
        return self.dim

    def tokenize(self, texts: list[str]) -> list:
        """The tokenizers Encodings of `texts`, stripped (as sentence-transformers does) and truncated."""
        texts = [str(t).strip() for t in texts]
        if self.lowercase:
            texts = [t.lower() for t in texts]
        return self.tokenizer.encode_batch(texts)

    def encode(self, texts: list[str], batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Float32 rows, one per text, in order. Texts are batched by length (as sentence-transformers
        does), so a batch pads little; padding never changes a vector (the mask keeps it out)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenize(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            types = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n], types[row, :n], mask[row, :n] = encodings[i].ids, encodings[i].type_ids, 1.0
            out[chunk] = self.forward(ids, types, mask)
        if normalize or self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        return out

    def forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled (not normalised) vectors of one padded batch: ids, token types (B, L) and mask (B, L) 0/1."""
        batch, length = ids.shape
        heads, head_dim = self.heads, self.dim // self.heads
        x = self.word[ids] + self.position[:length]
        if self.token_type is not None:
            x += self.token_type[types]
        x = layer_norm(x, *self.ln, self.eps).reshape(batch * length, self.dim)
        # padded keys get the most negative float: exp() of it is 0, as in transformers' extended mask
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            qkv = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)  # 3, B, h, L, d
            scores = np.matmul(qkv[0], qkv[1].transpose(0, 1, 3, 2))  # B, h, L, L (queries pre-scaled)
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = np.matmul(scores, qkv[2]).transpose(0, 2, 1, 3).reshape(batch * length, self.dim)
            x = self._rowwise(layer, context, x)
        x = x.reshape(batch, length, self.dim)
        if self.pooling == "cls":
            return x[:, 0]
        summed = np.einsum("bld,bl->bd", x, mask)
        return summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))

    def _rowwise(self, layer: _Layer, context: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The rest of a layer after attention (output dense, residual + LayerNorm, GELU feed-forward,
        residual + LayerNorm): token by token, so done ROWS tokens at a time, whose intermediates stay
        in the CPU cache (about 20% faster than whole-batch passes)."""
        out = np.empty_like(x)
        for start in range(0, len(x), ROWS):
            rows = slice(start, start + ROWS)
            attended = context[rows] @ layer.out_w
            attended += layer.out_b
            attended += x[rows]
            attended = layer_norm(attended, *layer.ln1, self.eps)
            hidden = attended @ layer.up_w
            hidden += layer.up_b
            down = gelu(hidden) @ layer.down_w
            down += layer.down_b
            down += attended
            out[rows] = layer_norm(down, *layer.ln2, self.eps)
        return out
